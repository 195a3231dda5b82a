"""Score rows and explain them: the work behind ``predict``, in one place for save and load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from explainable_model import output as columns
from explainable_model.estimators import MULTICLASS, PROBABILITY, REGRESSION, model_output
from explainable_model.exceptions import InvalidInputError
from explainable_model.explainers import Attributions, ShapExplainer
from explainable_model.features import FeatureSpec, coerce_frame, json_value
from explainable_model.params import (
    ALL_CLASSES,
    AUTO_CLASS,
    PREDICTED_CLASS,
    ExplanationSettings,
    RequestOptions,
    parse_params,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _ClassView:
    """Attributions for one explained class per row: values (n_rows, n_features), base (n_rows,)."""

    label: Any
    row_labels: list[str] | None
    values: np.ndarray
    base_values: np.ndarray


class ExplanationEngine:
    """Predicts and explains raw rows for one estimator, following the output contract.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
    features : list of FeatureSpec
    task : {"regression", "binary", "multiclass"}
    classes : list or None
        Class labels in the estimator's order, None for regressors.
    units : str
        Units of the SHAP attributions.
    explainer : ShapExplainer
    settings : ExplanationSettings
    """

    def __init__(
        self,
        estimator: Any,
        features: list[FeatureSpec],
        task: str,
        classes: list[Any] | None,
        units: str,
        explainer: ShapExplainer,
        settings: ExplanationSettings,
    ) -> None:
        self.estimator = estimator
        self.features = features
        self.task = task
        self.classes = classes
        self.units = units
        self.explainer = explainer
        self.settings = settings
        self._class_index = {label: i for i, label in enumerate(classes or [])}
        self._class_text: list[str] = [str(label) for label in classes or []]

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return ``frame`` checked and cast to the training columns and dtypes."""
        return coerce_frame(frame, self.features)

    def options(self, params: dict[str, Any] | None, strict: bool = True) -> RequestOptions:
        """Check request parameters; see :func:`explainable_model.params.parse_params`."""
        class_labels = self._class_text if self.classes is not None else None
        return parse_params(params, self.settings, len(self.features), class_labels, strict=strict)

    def predict(self, frame: pd.DataFrame, params: dict[str, Any] | None = None, strict: bool = True) -> pd.DataFrame:
        """Return predictions and attributions for ``frame``, one output row per input row."""
        options = self.options(params, strict=strict)
        rows = self.prepare(frame)

        try:
            predictions = self.estimator.predict(rows)
        except (ValueError, TypeError) as err:
            raise InvalidInputError(f"The estimator could not score the input: {err}") from err
        result: dict[str, Any] = {columns.PREDICTION: _plain_array(predictions)}
        if self.task != REGRESSION and hasattr(self.estimator, "predict_proba"):
            probabilities = self.estimator.predict_proba(rows)
            for k, label in enumerate(self.classes or []):
                result[columns.column_name(columns.PROBABILITY, class_label=label)] = probabilities[:, k]

        if "shap" in options.explainers:
            attributions = self.explainer.explain(rows, seed=options.seed, n_orderings=options.shap_orderings)
            result.update(self._shap_columns(rows, attributions, predictions, options))
        return _finite_or_null(pd.DataFrame(result))

    def explain(self, frame: pd.DataFrame, seed: int = 0) -> Attributions:
        """Return raw SHAP attributions for ``frame`` in the explainer's layout."""
        return self.explainer.explain(self.prepare(frame), seed=seed, n_orderings=self.settings.shap_orderings)

    def additivity_error(self, frame: pd.DataFrame) -> float:
        """Return the largest gap between base value plus attributions and the model output."""
        rows = self.prepare(frame)
        attributions = self.explainer.explain(rows, seed=self.settings.seed)
        expected = model_output(self.estimator, rows, self.units, self.task)
        return float(np.max(np.abs(attributions.output() - expected)))

    def _shap_columns(
        self, rows: pd.DataFrame, attributions: Attributions, predictions: np.ndarray, options: RequestOptions
    ) -> dict[str, Any]:
        views = self._class_views(attributions, predictions, options.explained_class)
        result: dict[str, Any] = {}
        if len(views) == 1 and views[0].row_labels is not None:
            result[columns.EXPLAINED_CLASS] = views[0].row_labels
        result[columns.SHAP_UNITS] = [self.units] * len(rows)
        for view in views:
            result[columns.column_name(columns.SHAP_BASE_VALUE, class_label=view.label)] = view.base_values
            for f, spec in enumerate(self.features):
                result[columns.column_name(columns.SHAP, spec.name, view.label)] = view.values[:, f]
        if options.top_k:
            primary = views[0] if len(views) == 1 else self._class_views(attributions, predictions, PREDICTED_CLASS)[0]
            result.update(self._reason_columns(rows, primary.values, options.top_k))
        return result

    def _class_views(self, attributions: Attributions, predictions: np.ndarray, requested: str) -> list[_ClassView]:
        n_rows = attributions.values.shape[0]
        if self.task == REGRESSION:
            return [_ClassView(None, None, attributions.values[:, :, 0], attributions.base_values[:, 0])]
        if requested == ALL_CLASSES:
            return [
                self._view_of(attributions, np.full(n_rows, k), label) for k, label in enumerate(self.classes or [])
            ]
        if requested == PREDICTED_CLASS or (requested == AUTO_CLASS and self.task == MULTICLASS):
            indices = np.array([self._class_index[_plain(label)] for label in predictions])
        elif requested == AUTO_CLASS:
            indices = np.full(n_rows, 1)
        else:
            indices = np.full(n_rows, self._class_text.index(requested))
        return [self._view_of(attributions, indices, None)]

    def _view_of(self, attributions: Attributions, indices: np.ndarray, label: Any) -> _ClassView:
        rows = np.arange(len(indices))
        row_labels = [self._class_text[k] for k in indices]
        if self.task == MULTICLASS:
            # values (n_rows, n_features, n_classes): pick one class per row.
            values = attributions.values[rows, :, indices]
            base = attributions.base_values[rows, indices]
            return _ClassView(label, row_labels, values, base)
        # A binary model's single output explains the positive class (index 1). The negative
        # class has the opposite attributions, and its base value is 1 - base in probability
        # units and -base in margin units.
        sign = np.where(indices == 1, 1.0, -1.0)
        values = attributions.values[:, :, 0] * sign[:, None]
        base = attributions.base_values[:, 0]
        base = np.where(indices == 1, base, (1.0 - base) if self.units == PROBABILITY else -base)
        return _ClassView(label, row_labels, values, base)

    def _reason_columns(self, rows: pd.DataFrame, values: np.ndarray, top_k: int) -> dict[str, Any]:
        # Features that pushed the explained output up the most, largest first; a stable sort
        # keeps feature order among equal attributions.
        order = np.argsort(-values, axis=1, kind="stable")[:, :top_k]
        result: dict[str, Any] = {}
        for rank in range(top_k):
            picked = order[:, rank]
            names = [self.features[f].name for f in picked]
            result[columns.reason_column(columns.REASON_FEATURE, rank + 1)] = names
            result[columns.reason_column(columns.REASON_VALUE, rank + 1)] = [
                _value_text(rows.iat[i, f]) for i, f in enumerate(picked)
            ]
            result[columns.reason_column(columns.REASON_ATTRIBUTION, rank + 1)] = values[np.arange(len(rows)), picked]
        return result


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _plain_array(values: Any) -> Any:
    array = np.asarray(values)
    return array if array.dtype != object else [_plain(value) for value in array]


def _value_text(value: Any) -> str | None:
    value = json_value(value)
    return None if value is None else str(value)


def _finite_or_null(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace NaN, infinite and missing values by None, so the frame serializes to strict JSON.

    Only columns that hold such a value change, to the object dtype. The others keep their
    dtype, float64 for attributions. A text column would otherwise store a missing value as
    NaN, which MLflow's scoring server writes as a bare ``NaN`` token.
    """
    for name in frame.columns:
        values = frame[name]
        if values.dtype.kind == "f":
            valid = np.isfinite(values.to_numpy())
            if valid.all():
                continue
            logger.warning("Output column %r has non-finite values; they are returned as null.", name)
        else:
            valid = values.notna().to_numpy()
            if valid.all():
                continue
        frame[name] = values.astype(object).where(valid, None)
    return frame
