"""Exact SHAP values of linear models, in closed form.

With features treated as independent (the interventional definition), the SHAP value of
feature ``j`` for a linear model is ``coef[j] * (x[j] - mean(background[:, j]))`` and the base
value is the model's mean output over the background data. Both are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from explainable_model.estimators import final_estimator, preprocessor
from explainable_model.explainers._base import Attributions, ShapExplainer, group_columns
from explainable_model.transforms import to_dense


class LinearShapExplainer(ShapExplainer):
    """Exact SHAP for linear regressors and classifiers, alone or at the end of a Pipeline.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline whose last step has ``coef_`` and ``intercept_``
    background_data : pandas.DataFrame
        Raw rows whose transformed mean is the reference point.
    groups : numpy.ndarray of shape (n_transformed, n_features) or None
        Map from transformed columns to raw features, None for a bare estimator.
    """

    method = "linear"
    exact = True

    def __init__(self, estimator: Any, background_data: pd.DataFrame, groups: np.ndarray | None) -> None:
        self._preprocessor = preprocessor(estimator)
        final = final_estimator(estimator)
        # coef_ is (n_features,) for regressors and (1 or n_classes, n_features) for
        # classifiers; rows of self._coef are explained outputs.
        self._coef = np.atleast_2d(np.asarray(final.coef_, dtype="float64"))
        self._intercept = np.atleast_1d(np.asarray(final.intercept_, dtype="float64"))
        self._groups = groups
        self._mean = self._transform(background_data).mean(axis=0)
        self._base_value = self._mean @ self._coef.T + self._intercept

    def _transform(self, frame: pd.DataFrame) -> np.ndarray:
        data = frame if self._preprocessor is None else self._preprocessor.transform(frame)
        return to_dense(data)

    def explain(self, frame: pd.DataFrame, seed: int = 0, n_orderings: int | None = None) -> Attributions:
        centered = self._transform(frame) - self._mean
        # (n_rows, n_transformed, 1) * (1, n_transformed, n_outputs)
        values = centered[:, :, None] * self._coef.T[None, :, :]
        base_values = np.broadcast_to(self._base_value, (len(frame), self._coef.shape[0])).copy()
        return Attributions(group_columns(values, self._groups), base_values)
