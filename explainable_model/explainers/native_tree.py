"""Exact TreeSHAP for XGBoost and LightGBM from the libraries' own contributions.

XGBoost's ``pred_contribs`` and LightGBM's ``pred_contrib`` compute tree-path-dependent
TreeSHAP values, the same values as ``shap.TreeExplainer`` on these models, in multithreaded
C++. They are in margin units: log-odds for binary models, per-class logits for multiclass
ones and the raw prediction for regressors. XGBoost computes them in float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from explainable_model.estimators import final_estimator, preprocessor
from explainable_model.explainers._base import Attributions, ShapExplainer, group_columns
from explainable_model.transforms import to_dense


class NativeTreeShapExplainer(ShapExplainer):
    """Exact TreeSHAP for a booster model, alone or at the end of a Pipeline.

    Parameters
    ----------
    estimator : BoosterClassifier, BoosterRegressor or Pipeline ending in one
    groups : numpy.ndarray of shape (n_transformed, n_features) or None
        Map from transformed columns to raw features, None for a bare booster.
    """

    method = "tree"
    exact = True

    def __init__(self, estimator: Any, groups: np.ndarray | None) -> None:
        self._preprocessor = preprocessor(estimator)
        self._model = final_estimator(estimator)
        self._groups = groups
        self.single_precision = self._model.facts.library == "xgboost"

    def explain(self, frame: pd.DataFrame, seed: int = 0, n_orderings: int | None = None) -> Attributions:
        data = frame if self._preprocessor is None else to_dense(self._preprocessor.transform(frame))
        values, base_values = self._model.contributions(data)
        return Attributions(group_columns(values, self._groups), base_values)
