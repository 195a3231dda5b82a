"""Exact TreeSHAP for scikit-learn trees and tree ensembles, through ``shap.TreeExplainer``.

Attributions are tree-path-dependent: they use the training data that reached each node
instead of a background sample, need no background data, and add up exactly to the model's
raw output. The raw output of a decision tree, random forest or extra-trees classifier is the
class probability. For gradient boosting it is the margin before the sigmoid or softmax.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shap
from sklearn.ensemble import GradientBoostingClassifier

from explainable_model.estimators import BINARY, final_estimator, preprocessor
from explainable_model.exceptions import UnsupportedEstimatorError
from explainable_model.explainers._base import Attributions, ShapExplainer, group_columns
from explainable_model.explainers.parallel import TreeShapPool, resolve_n_jobs
from explainable_model.transforms import to_dense


def _gradient_boosting_class_models(model: GradientBoostingClassifier, sample: np.ndarray) -> list[dict[str, Any]]:
    """Describe each class of a multiclass GradientBoostingClassifier as a shap tree model.

    ``shap.TreeExplainer`` accepts GradientBoostingClassifier for binary tasks only. A
    multiclass one holds one regression tree per class and stage, so each class is an
    additive tree model of its own, whose offset is the initial raw prediction.
    """
    sample32 = sample.astype("float32")
    raw = model.decision_function(sample32[:1])[0]
    class_models = []
    for k in range(model.estimators_.shape[1]):
        trees = []
        stage_sum = 0.0
        for stage in model.estimators_[:, k]:
            tree = stage.tree_
            trees.append(
                {
                    "children_left": tree.children_left,
                    "children_right": tree.children_right,
                    "children_default": tree.children_left,
                    "features": tree.feature,
                    "thresholds": tree.threshold,
                    "values": tree.value[:, 0, :] * model.learning_rate,
                    "node_sample_weight": tree.weighted_n_node_samples,
                }
            )
            stage_sum += model.learning_rate * stage.predict(sample32[:1])[0]
        class_models.append(
            {"trees": trees, "base_offset": raw[k] - stage_sum, "input_dtype": np.float32, "tree_output": "raw_value"}
        )
    return class_models


class TreeShapExplainer(ShapExplainer):
    """Exact TreeSHAP for a tree model, alone or at the end of a Pipeline.

    Parameters
    ----------
    estimator : fitted tree model or Pipeline ending in one
    task : {"regression", "binary", "multiclass"}
    groups : numpy.ndarray of shape (n_transformed, n_features) or None
        Map from transformed columns to raw features, None for a bare estimator.
    background_data : pandas.DataFrame
        Raw rows, used only to find the offsets of a multiclass GradientBoostingClassifier.
    n_jobs : int or None
        Processes that share large requests; see :mod:`explainable_model.explainers.parallel`.
    probability : bool
        Explain class probabilities instead of the raw output. For models whose raw output is
        a margin this uses shap's interventional TreeSHAP with ``model_output="probability"``,
        with ``background_data`` as the reference; its additivity is checked at save time.
    """

    method = "tree"
    exact = True

    def __init__(
        self,
        estimator: Any,
        task: str,
        groups: np.ndarray | None,
        background_data: pd.DataFrame,
        n_jobs: int | None = None,
        probability: bool = False,
    ) -> None:
        self._preprocessor = preprocessor(estimator)
        self._task = task
        self._groups = groups
        final = final_estimator(estimator)
        models: list[Any] = [getattr(final, "booster", final)]
        options: dict[str, Any] = {"feature_perturbation": "tree_path_dependent"}
        if probability:
            options = {
                "data": self._transform(background_data),
                "feature_perturbation": "interventional",
                "model_output": "probability",
            }
        elif isinstance(final, GradientBoostingClassifier) and final.estimators_.shape[1] > 1:
            sample = self._transform(background_data.iloc[:1])
            models = _gradient_boosting_class_models(final, sample)
        try:
            self._explainers = [shap.TreeExplainer(model, **options) for model in models]
        except Exception as err:
            # shap raises NotImplementedError, its InvalidModelError or a bare Exception for
            # combinations it does not support (multiclass models in probability units, say).
            space = "probability" if probability else "raw"
            raise UnsupportedEstimatorError(
                f"shap cannot explain {type(final).__name__} in {space} units: {str(err).rstrip('.')}. "
                "Use output_space='raw', "
                "or shap_method='permutation' for probabilities."
            ) from err
        self._pool = TreeShapPool(models, options, resolve_n_jobs(n_jobs))
        # XGBoost computes in float32 in any units.
        self.single_precision = probability and type(models[0]).__module__.startswith("xgboost")

    def _transform(self, frame: pd.DataFrame) -> np.ndarray:
        data = frame if self._preprocessor is None else self._preprocessor.transform(frame)
        return to_dense(data)

    def _raw_values(self, transformed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results = self._pool.shap_values(transformed)
        if results is None:
            results = [np.asarray(e.shap_values(transformed, check_additivity=False)) for e in self._explainers]
        values, base = [], []
        for explainer, result in zip(self._explainers, results, strict=True):
            # shap returns (n_rows, n_transformed) for one output and
            # (n_rows, n_transformed, n_outputs) for several.
            values.append(result[:, :, None] if result.ndim == 2 else result)
            base.append(np.atleast_1d(np.asarray(explainer.expected_value, dtype="float64")))
        return np.concatenate(values, axis=2), np.concatenate(base)

    def explain(self, frame: pd.DataFrame, seed: int = 0, n_orderings: int | None = None) -> Attributions:
        values, base = self._raw_values(self._transform(frame))
        if self._task == BINARY and values.shape[2] == 2:
            # Forests give one output per class; a binary model explains the positive class.
            values, base = values[:, :, 1:], base[1:]
        base_values = np.broadcast_to(base, (len(frame), base.shape[0])).copy()
        return Attributions(group_columns(values, self._groups), base_values)
