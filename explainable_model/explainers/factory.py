"""Choose and build the SHAP explainer for an estimator.

Exact TreeSHAP serves scikit-learn trees and tree ensembles, exact linear SHAP serves linear
models, and sampled permutation SHAP on raw inputs serves everything else. The exact methods
run on the data that a Pipeline's last step sees and are summed back to raw features; when
the preprocessing has no raw-feature map, the whole Pipeline is explained on raw inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import ensemble, linear_model, tree

from explainable_model.estimators import (
    LOG_ODDS,
    LOGIT,
    MARGIN,
    MULTICLASS,
    PROBABILITY,
    REGRESSION,
    TARGET,
    final_estimator,
    model_output,
    preprocessor,
)
from explainable_model.exceptions import UnsupportedEstimatorError
from explainable_model.explainers._base import ShapExplainer
from explainable_model.explainers.linear import LinearShapExplainer
from explainable_model.explainers.native_tree import NativeTreeShapExplainer
from explainable_model.explainers.parallel import resolve_n_jobs
from explainable_model.explainers.permutation import PermutationShapExplainer
from explainable_model.explainers.tree import TreeShapExplainer
from explainable_model.features import FeatureSpec
from explainable_model.native import is_booster_model
from explainable_model.transforms import feature_groups, to_dense

SHAP_METHODS = ("auto", "tree", "linear", "permutation")

_FOREST_CLASSIFIERS = (
    tree.DecisionTreeClassifier,
    tree.ExtraTreeClassifier,
    ensemble.RandomForestClassifier,
    ensemble.ExtraTreesClassifier,
)
_TREE_MODELS = _FOREST_CLASSIFIERS + (
    tree.DecisionTreeRegressor,
    tree.ExtraTreeRegressor,
    ensemble.RandomForestRegressor,
    ensemble.ExtraTreesRegressor,
    ensemble.GradientBoostingClassifier,
    ensemble.GradientBoostingRegressor,
    ensemble.HistGradientBoostingClassifier,
    ensemble.HistGradientBoostingRegressor,
)
_LINEAR_MODELS = (
    linear_model.LinearRegression,
    linear_model._base.LinearModel,
    linear_model._base.LinearClassifierMixin,
)
_LOG_LOSS_CLASSIFIERS = (linear_model.LogisticRegression, linear_model.LogisticRegressionCV)


def _is_tree_model(final: Any) -> bool:
    if is_booster_model(final):
        return True
    if not isinstance(final, _TREE_MODELS):
        return False
    # TreeSHAP in shap does not follow HistGradientBoosting's categorical splits.
    categorical = getattr(final, "is_categorical_", None)
    return categorical is None or not np.any(categorical)


def _is_linear_model(final: Any) -> bool:
    return isinstance(final, _LINEAR_MODELS) and hasattr(final, "coef_") and np.ndim(final.coef_) <= 2


def choose_shap_method(estimator: Any, groups_available: bool) -> str:
    """Return ``"tree"``, ``"linear"`` or ``"permutation"`` for ``estimator``."""
    final = final_estimator(estimator)
    if groups_available and _is_tree_model(final):
        return "tree"
    if groups_available and _is_linear_model(final):
        return "linear"
    return "permutation"


OUTPUT_SPACES = ("raw", "probability")


def shap_units(estimator: Any, method: str, task: str, output_space: str = "raw") -> str:
    """Return the units of the model output that ``method`` explains for ``estimator``.

    Raises
    ------
    UnsupportedEstimatorError
        If ``output_space`` is ``"probability"`` and the method cannot be exact there.
    """
    final = final_estimator(estimator)
    if output_space == "probability":
        return _probability_units(estimator, method, task)
    if task == REGRESSION and not (method == "tree" and is_booster_model(final)):
        return TARGET
    margin = LOGIT if task == MULTICLASS else LOG_ODDS
    if method == "tree":
        if is_booster_model(final) and task == REGRESSION:
            return TARGET if final.facts.identity_link else MARGIN
        return PROBABILITY if isinstance(final, _FOREST_CLASSIFIERS) else margin
    if method == "linear":
        return margin if isinstance(final, _LOG_LOSS_CLASSIFIERS) or _has_log_loss(final) else MARGIN
    if hasattr(estimator, "predict_proba"):
        return PROBABILITY
    if hasattr(estimator, "decision_function"):
        return MARGIN
    raise UnsupportedEstimatorError(
        f"{type(final).__name__} is a classifier with neither predict_proba nor decision_function; "
        "there is no output to explain."
    )


def _probability_units(estimator: Any, method: str, task: str) -> str:
    if task == REGRESSION:
        raise UnsupportedEstimatorError("output_space='probability' applies to classifiers; this model is a regressor.")
    if not hasattr(estimator, "predict_proba"):
        raise UnsupportedEstimatorError(
            f"output_space='probability' needs predict_proba, which {type(final_estimator(estimator)).__name__} lacks."
        )
    if method == "linear":
        raise UnsupportedEstimatorError(
            "Linear SHAP is exact in margin units only, since probabilities are not linear in the features. "
            "Use output_space='raw', or shap_method='permutation' for probabilities."
        )
    return PROBABILITY


def _has_log_loss(final: Any) -> bool:
    return getattr(final, "loss", None) in ("log_loss", "log")


def transformed_groups(estimator: Any, background_data: pd.DataFrame, n_features: int) -> np.ndarray | None:
    """Return the raw-feature map of a Pipeline's preprocessing, identity for a bare estimator."""
    steps = preprocessor(estimator)
    if steps is None:
        return np.eye(n_features)
    n_transformed = to_dense(steps.transform(background_data.iloc[:2])).shape[1]
    return feature_groups(steps, n_features, n_transformed)


def build_shap_explainer(
    estimator: Any,
    method: str,
    task: str,
    units: str,
    features: list[FeatureSpec],
    background_data: pd.DataFrame,
    n_orderings: int = 10,
    n_jobs: int | None = None,
) -> ShapExplainer:
    # The units decide the explainer: "probability" for a model whose raw output is a margin
    # needs interventional TreeSHAP on the probability.
    """Build the SHAP explainer named by ``method``.

    Raises
    ------
    UnsupportedEstimatorError
        If ``method`` is ``"tree"`` or ``"linear"`` and the estimator or its preprocessing
        does not allow it.
    """
    if method == "permutation":
        return PermutationShapExplainer(
            lambda frame: model_output(estimator, frame, units, task),
            background_data,
            features,
            n_orderings=n_orderings,
        )

    groups = transformed_groups(estimator, background_data, len(features))
    if groups is None:
        raise UnsupportedEstimatorError(
            f"shap_method={method!r} needs a Pipeline whose preprocessing maps each output column "
            "to one raw column; this one mixes columns or uses a transformer that explainable_model "
            "has no map for (see the log for which). Use shap_method='permutation'."
        )
    # A bare estimator's own columns are the raw features: no grouping needed.
    groups = None if preprocessor(estimator) is None else groups
    final = final_estimator(estimator)
    if method == "tree":
        if not _is_tree_model(final):
            raise UnsupportedEstimatorError(
                f"shap_method='tree' does not support {type(final).__name__}; use 'auto' or 'permutation'."
            )
        probability = units == PROBABILITY and not isinstance(final, _FOREST_CLASSIFIERS)
        if is_booster_model(final):
            final.set_threads(resolve_n_jobs(n_jobs))
            if not probability:
                return NativeTreeShapExplainer(estimator, groups)
        return TreeShapExplainer(estimator, task, groups, background_data, n_jobs=n_jobs, probability=probability)
    if method == "linear":
        if not _is_linear_model(final):
            raise UnsupportedEstimatorError(
                f"shap_method='linear' needs a linear model with coef_, got {type(final).__name__}; "
                "use 'auto' or 'permutation'."
            )
        return LinearShapExplainer(estimator, background_data, groups)
    raise UnsupportedEstimatorError(f"Unknown shap_method {method!r}; expected one of {SHAP_METHODS}.")
