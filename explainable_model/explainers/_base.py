"""The interface shared by SHAP explainers, and the result they return."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Attributions:
    """SHAP attributions per raw input feature.

    Attributes
    ----------
    values : numpy.ndarray of shape (n_rows, n_features, n_outputs)
        One attribution per row, raw feature and explained output, in the explainer's units.
    base_values : numpy.ndarray of shape (n_rows, n_outputs)
        The expected model output that the attributions start from.
    """

    values: np.ndarray
    base_values: np.ndarray

    def output(self) -> np.ndarray:
        """Return ``base_values + values.sum(axis=1)``, of shape (n_rows, n_outputs)."""
        return self.base_values + self.values.sum(axis=1)


class ShapExplainer(ABC):
    """Computes SHAP attributions for raw input rows.

    Subclasses set ``method`` (the name stored in the model's configuration) and ``exact``
    (whether attributions are exact Shapley values, so additivity must hold to 1e-6).
    """

    method: str = ""
    exact: bool = True
    # True for explainers whose values are computed in float32, so that additivity holds only
    # to float32 rounding.
    single_precision: bool = False

    @abstractmethod
    def explain(self, frame: pd.DataFrame, seed: int = 0, n_orderings: int | None = None) -> Attributions:
        """Return attributions for ``frame``, rows already in the training columns and dtypes.

        ``seed`` and ``n_orderings`` apply to sampling explainers; exact ones ignore them.
        """


def group_columns(values: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Sum attributions of transformed columns into raw features.

    ``values`` has shape (n_rows, n_transformed, n_outputs) and ``groups`` shape
    (n_transformed, n_features); the result has shape (n_rows, n_features, n_outputs).
    """
    if groups is None:
        return values
    return np.einsum("rto,tf->rfo", values, groups)
