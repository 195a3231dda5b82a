"""Model-agnostic SHAP values estimated by sampling feature orderings.

For each explained row and each sampled ordering of the features, features are switched from
background values to the row's values one at a time. The change in the mean model output at
each switch is that feature's marginal contribution. Averaged over orderings this estimates
the interventional SHAP values. Along every ordering the contributions telescope from the
mean output over the background data to the row's own output, so the attributions add up
exactly (up to floating point) whatever the number of orderings; the sampling error sits in
how the total is shared between features.

The model always receives DataFrames with the training column names and dtypes, so
Pipelines that select columns by name or encode text columns work unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from explainable_model.explainers._base import Attributions, ShapExplainer
from explainable_model.features import FeatureSpec, json_value, restore_dtypes

OutputFunction = Callable[[pd.DataFrame], np.ndarray]
_UINT64_MASK = 2**64 - 1


def row_seed(row: pd.Series, seed: int) -> np.random.Generator:
    """Return a random generator that depends only on ``seed`` and the row's values.

    The same row with the same seed gets the same generator in any batch, order, process or
    thread, and no global random state is read or changed.
    """
    text = json.dumps([json_value(value) for value in row.tolist()], default=str, sort_keys=True)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    # SeedSequence takes non-negative integers only, so a negative seed is read as unsigned 64-bit.
    return np.random.default_rng([int(seed) & _UINT64_MASK, int.from_bytes(digest[:8], "little")])


def feature_orderings(n_features: int, n_orderings: int, rng: np.random.Generator) -> np.ndarray:
    """Sample ``n_orderings`` orderings of the features, each followed by its reverse.

    Reversed pairs (antithetic sampling) cancel much of the sampling error of a
    feature's position in the ordering.

    Returns
    -------
    numpy.ndarray of shape (n_orderings, n_features)
    """
    orderings: list[np.ndarray] = []
    while len(orderings) < n_orderings:
        ordering = rng.permutation(n_features)
        orderings.append(ordering)
        if len(orderings) < n_orderings:
            orderings.append(ordering[::-1])
    return np.asarray(orderings)


class PermutationShapExplainer(ShapExplainer):
    """Sampled SHAP values for any model, computed on raw input rows.

    Parameters
    ----------
    output_function : callable
        Maps a raw DataFrame to the model output, an array of shape (n_rows, n_outputs).
    background_data : pandas.DataFrame
        Raw rows in the training dtypes; masked features take their values from these rows.
    features : list of FeatureSpec
    n_orderings : int
        Feature orderings sampled per row. Cost per row is about
        ``n_orderings * (n_features - 1) * len(background_data)`` model evaluations.
    max_batch_rows : int
        Largest number of rows sent to the model in one call.
    """

    method = "permutation"
    exact = False

    def __init__(
        self,
        output_function: OutputFunction,
        background_data: pd.DataFrame,
        features: list[FeatureSpec],
        n_orderings: int = 10,
        max_batch_rows: int = 100_000,
    ) -> None:
        self._output = output_function
        self._features = features
        self._background = background_data.reset_index(drop=True)
        self._background_columns = [self._background[spec.name].to_numpy(dtype=object) for spec in features]
        self.n_orderings = n_orderings
        self._max_batch_rows = max_batch_rows
        self._base_value = self._output(self._background).mean(axis=0)

    def explain(self, frame: pd.DataFrame, seed: int = 0, n_orderings: int | None = None) -> Attributions:
        n_orderings = n_orderings or self.n_orderings
        n_rows, n_features = len(frame), len(self._features)
        full = self._output(frame)
        base_values = np.broadcast_to(self._base_value, full.shape).copy()
        values = np.zeros((n_rows, n_features, full.shape[1]))
        if n_features == 1:
            values[:, 0, :] = full - base_values
            return Attributions(values, base_values)

        orderings = np.stack(
            [feature_orderings(n_features, n_orderings, row_seed(frame.iloc[i], seed)) for i in range(n_rows)]
        )
        rows_per_call = max(1, self._max_batch_rows // (n_orderings * (n_features - 1) * len(self._background)))
        for start in range(0, n_rows, rows_per_call):
            stop = min(start + rows_per_call, n_rows)
            chunk = self._explain_chunk(frame.iloc[start:stop], orderings[start:stop], full[start:stop])
            values[start:stop] = chunk
        return Attributions(values, base_values)

    def _explain_chunk(self, frame: pd.DataFrame, orderings: np.ndarray, full: np.ndarray) -> np.ndarray:
        n_rows, n_orderings, n_features = orderings.shape
        n_background = len(self._background)
        steps = n_features - 1

        # in_coalition[r, o, s, f]: feature f already comes from row r at step s + 1 of ordering o.
        positions = np.argsort(orderings, axis=2)
        in_coalition = positions[:, :, None, :] <= np.arange(steps)[None, None, :, None]

        # One masked row per (row, ordering, step, background row), in that order.
        take_row = np.repeat(in_coalition.reshape(-1, n_features), n_background, axis=0)
        repeats = n_orderings * steps * n_background
        columns = {}
        for f, spec in enumerate(self._features):
            row_values = np.repeat(frame[spec.name].to_numpy(dtype=object), repeats)
            background_values = np.tile(self._background_columns[f], n_rows * n_orderings * steps)
            columns[spec.name] = np.where(take_row[:, f], row_values, background_values)
        masked = restore_dtypes(pd.DataFrame(columns), self._features)

        n_outputs = full.shape[1]
        output = self._output(masked).reshape(n_rows, n_orderings, steps, n_background, n_outputs).mean(axis=3)
        start = np.broadcast_to(self._base_value, (n_rows, n_orderings, 1, n_outputs))
        end = np.broadcast_to(full[:, None, None, :], (n_rows, n_orderings, 1, n_outputs))
        # (n_rows, n_orderings, n_features + 1, n_outputs): mean output before each switch and after the last.
        path = np.concatenate([start, output, end], axis=2)
        contributions = np.diff(path, axis=2)

        values = np.zeros((n_rows, n_features, n_outputs))
        row_index = np.arange(n_rows)[:, None, None]
        np.add.at(values, (row_index, orderings), contributions)
        return values / n_orderings
