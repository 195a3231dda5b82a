"""Map the columns that a Pipeline's preprocessing produces back to its raw input features.

An exact explainer runs on the transformed data that the final estimator sees. Summing the
attributions of every transformed column that came from one raw column gives that raw
column's attribution, and the sum over all columns is unchanged, so additivity still holds.
The map below is built from the fitted transformers' own attributes; a transformer whose
outputs mix several inputs (PCA, KNNImputer, an arbitrary FunctionTransformer) has no such
map, and the model is then explained on raw inputs instead.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn import preprocessing
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import SelectorMixin
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

# Each transformed column gets the set of raw feature indices that it depends on.
Sources = list[frozenset[int]]

# Transformers whose output column i depends on input column i only.
_ELEMENTWISE = (
    preprocessing.StandardScaler,
    preprocessing.MinMaxScaler,
    preprocessing.MaxAbsScaler,
    preprocessing.RobustScaler,
    preprocessing.QuantileTransformer,
    preprocessing.PowerTransformer,
    preprocessing.OrdinalEncoder,
    preprocessing.Binarizer,
)


def _one_hot_sources(encoder: preprocessing.OneHotEncoder, inputs: Sources) -> Sources:
    # _n_features_outs accounts for drop="first"/"if_binary" and for infrequent categories
    # grouped into one column; it is private but present since scikit-learn 1.1.
    counts = getattr(encoder, "_n_features_outs", None)
    if counts is None:
        counts = [len(categories) for categories in encoder.categories_]
    return [inputs[i] for i, count in enumerate(counts) for _ in range(count)]


def _imputer_sources(imputer: SimpleImputer, inputs: Sources) -> Sources:
    kept = list(range(len(inputs)))
    if not getattr(imputer, "keep_empty_features", False):
        statistics = np.asarray(imputer.statistics_, dtype=object)
        kept = [i for i in kept if not pd.isna(statistics[i])]
    sources = [inputs[i] for i in kept]
    if imputer.add_indicator and imputer.indicator_ is not None:
        sources += [inputs[i] for i in imputer.indicator_.features_]
    return sources


def _kbins_sources(binner: preprocessing.KBinsDiscretizer, inputs: Sources) -> Sources:
    if binner.encode == "ordinal":
        return list(inputs)
    return [inputs[i] for i, count in enumerate(binner.n_bins_) for _ in range(int(count))]


def _column_transformer_sources(transformer: ColumnTransformer, inputs: Sources) -> Sources | None:
    # Input indices per fitted transformer, resolved by scikit-learn from names, masks or
    # callables; private, present since scikit-learn 1.2.
    indices = getattr(transformer, "_transformer_to_input_indices", None)
    if indices is None:
        return None
    sources: Sources = []
    for name, step, _ in transformer.transformers_:
        columns = list(indices.get(name, []))
        if step == "drop" or not columns:
            continue
        part = [inputs[i] for i in columns]
        step_sources = part if step == "passthrough" else transformer_sources(step, part)
        if step_sources is None:
            return None
        sources += step_sources
    return sources


def transformer_sources(transformer: Any, inputs: Sources) -> Sources | None:
    """Return the raw sources of each output column of a fitted transformer.

    Parameters
    ----------
    transformer : fitted scikit-learn transformer, Pipeline or ColumnTransformer
    inputs : list of frozenset of int
        The raw feature indices behind each input column of ``transformer``.

    Returns
    -------
    list of frozenset of int, or None
        One entry per output column, or None when the transformer mixes its inputs or is not
        known here.
    """
    if transformer in (None, "passthrough"):
        return list(inputs)
    if isinstance(transformer, preprocessing.FunctionTransformer) and transformer.func is None:
        # A fitted ColumnTransformer stores "passthrough" as an identity FunctionTransformer.
        return list(inputs)
    if isinstance(transformer, Pipeline):
        sources: Sources | None = list(inputs)
        for _, step in transformer.steps:
            sources = transformer_sources(step, sources) if sources is not None else None
        return sources
    if isinstance(transformer, ColumnTransformer):
        return _column_transformer_sources(transformer, inputs)
    if isinstance(transformer, preprocessing.OneHotEncoder):
        return _one_hot_sources(transformer, inputs)
    if isinstance(transformer, SimpleImputer):
        return _imputer_sources(transformer, inputs)
    if isinstance(transformer, MissingIndicator):
        return [inputs[i] for i in transformer.features_]
    if isinstance(transformer, preprocessing.KBinsDiscretizer):
        return _kbins_sources(transformer, inputs)
    if isinstance(transformer, SelectorMixin):
        return [inputs[i] for i in np.flatnonzero(transformer.get_support())]
    if isinstance(transformer, _ELEMENTWISE):
        return list(inputs)
    logger.warning(
        "No raw-feature map for %s, so exact SHAP cannot group its outputs; the model is explained "
        "on raw inputs with permutation SHAP.",
        type(transformer).__name__,
    )
    return None


def feature_groups(transformer: Any, n_features: int, n_transformed: int) -> np.ndarray | None:
    """Return the matrix that sums transformed-column attributions into raw-feature ones.

    Returns
    -------
    numpy.ndarray of shape (n_transformed, n_features), or None
        ``groups[j, i]`` is 1 when transformed column ``j`` comes from raw feature ``i`` alone.
        None when a transformed column depends on several raw features, or the map does not
        match the ``n_transformed`` columns that the transformer really produces.
    """
    sources = transformer_sources(transformer, [frozenset([i]) for i in range(n_features)])
    if sources is None:
        return None
    if len(sources) != n_transformed:
        logger.warning(
            "The raw-feature map has %d columns but the preprocessing produces %d; explaining on raw inputs instead.",
            len(sources),
            n_transformed,
        )
        return None
    if any(len(source) != 1 for source in sources):
        return None
    groups = np.zeros((n_transformed, n_features))
    for column, source in enumerate(sources):
        groups[column, next(iter(source))] = 1.0
    return groups


def to_dense(transformed: Any) -> np.ndarray:
    """Return transformed data as a dense float64 array of shape (n_rows, n_transformed)."""
    if sparse.issparse(transformed):
        transformed = transformed.toarray()
    return np.asarray(transformed, dtype="float64")
