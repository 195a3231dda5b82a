"""Score rows and explain them: the work behind ``predict``, in one place for save and load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble._forest import ForestClassifier
from sklearn.tree import DecisionTreeClassifier

from explainable_model import output as columns
from explainable_model.estimators import MULTICLASS, PROBABILITY, REGRESSION, final_estimator
from explainable_model.exceptions import InvalidInputError, InvalidParameterError
from explainable_model.explainers import Attributions, ShapExplainer
from explainable_model.explainers.lime import LimeExplainer, LimeExplanation
from explainable_model.features import FeatureSpec, coerce_frame, json_value
from explainable_model.native import is_booster_model
from explainable_model.output_frame import OutputFrame
from explainable_model.params import (
    ALL_CLASSES,
    AUTO_CLASS,
    PREDICTED_CLASS,
    ExplanationSettings,
    RequestOptions,
    parse_params,
)

logger = logging.getLogger(__name__)

# scikit-learn classifiers whose predict is classes_[argmax(predict_proba)].
_ARGMAX_CLASSIFIERS = (ForestClassifier, DecisionTreeClassifier)


@dataclass(frozen=True)
class _Target:
    """The class that each row explains, or None for regressors, and the label of its columns."""

    label: Any
    indices: np.ndarray | None


@dataclass(frozen=True)
class _ClassView:
    """SHAP attributions for one explained class per row: values (n_rows, n_features), base (n_rows,)."""

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
    lime_explainer : LimeExplainer or None
        Needed when a request asks for LIME.
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
        lime_explainer: LimeExplainer | None = None,
    ) -> None:
        self.estimator = estimator
        self.features = features
        self.task = task
        self.classes = classes
        self.units = units
        self.explainer = explainer
        self.settings = settings
        self.lime_explainer = lime_explainer
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
            predictions, probabilities = self._predict(rows)
        except (ValueError, TypeError) as err:
            # The estimator's own message may quote input values, so it is left to the chained
            # exception and kept out of the message, which a served error response repeats.
            raise InvalidInputError(
                f"The estimator could not score the input ({type(err).__name__}); check that every "
                "column holds values like those the model was trained on."
            ) from err
        result: dict[str, Any] = {columns.PREDICTION: _plain_array(predictions)}
        if probabilities is not None:
            for k, label in enumerate(self.classes or []):
                result[columns.column_name(columns.PROBABILITY, class_label=label)] = probabilities[:, k]

        targets = self._targets(predictions, options.explained_class)
        if len(targets) == 1 and targets[0].indices is not None:
            result[columns.EXPLAINED_CLASS] = [self._class_text[k] for k in targets[0].indices]
        reason_values = None
        if "shap" in options.explainers:
            attributions = self.explainer.explain(rows, seed=options.seed, n_orderings=options.shap_orderings)
            result[columns.SHAP_UNITS] = [self.units] * len(rows)
            for target in targets:
                view = self._shap_view(attributions, target)
                result[columns.column_name(columns.SHAP_BASE_VALUE, class_label=target.label)] = view.base_values
                result.update(self._attribution_columns(columns.SHAP, view.values, target.label))
            if options.top_k:
                reason_values = self._shap_view(attributions, self._primary_target(targets, predictions)).values
        if "lime" in options.explainers:
            for target in targets:
                explanation = self._lime(rows, target, options)
                result.update(self._lime_columns(explanation, target.label))
            if options.top_k and reason_values is None:
                reason_values = self._lime(rows, self._primary_target(targets, predictions), options).weights
        if reason_values is not None:
            result.update(self._reason_columns(rows, reason_values, options.top_k))
        return OutputFrame({name: _json_safe(name, values) for name, values in result.items()})

    def _predict(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the predictions and, for classifiers that have them, the class probabilities."""
        if self.task == REGRESSION or not hasattr(self.estimator, "predict_proba"):
            return self.estimator.predict(rows), None
        probabilities = self.estimator.predict_proba(rows)
        final = final_estimator(self.estimator)
        if is_booster_model(final) or isinstance(final, _ARGMAX_CLASSIFIERS):
            # These models' predict is the most probable class, so one call does.
            return np.asarray(self.classes)[probabilities.argmax(axis=1)], probabilities
        return self.estimator.predict(rows), probabilities

    def explain(self, frame: pd.DataFrame, seed: int = 0) -> Attributions:
        """Return raw SHAP attributions for ``frame`` in the explainer's layout."""
        return self.explainer.explain(self.prepare(frame), seed=seed, n_orderings=self.settings.shap_orderings)

    def _targets(self, predictions: np.ndarray, requested: str) -> list[_Target]:
        """Return which class each row explains: one target, or one per class for "all"."""
        n_rows = len(predictions)
        if self.task == REGRESSION:
            return [_Target(None, None)]
        if requested == ALL_CLASSES:
            return [_Target(label, np.full(n_rows, k)) for k, label in enumerate(self.classes or [])]
        if requested == PREDICTED_CLASS or (requested == AUTO_CLASS and self.task == MULTICLASS):
            return [_Target(None, np.array([self._class_index[_plain(label)] for label in predictions]))]
        if requested == AUTO_CLASS:
            # A binary model explains its positive class, the second entry of classes_.
            return [_Target(None, np.full(n_rows, 1))]
        return [_Target(None, np.full(n_rows, self._class_text.index(requested)))]

    def _primary_target(self, targets: list[_Target], predictions: np.ndarray) -> _Target:
        """Return the target that reasons follow: the only one, or the predicted class."""
        return targets[0] if len(targets) == 1 else self._targets(predictions, PREDICTED_CLASS)[0]

    def _shap_view(self, attributions: Attributions, target: _Target) -> _ClassView:
        if target.indices is None:
            return _ClassView(attributions.values[:, :, 0], attributions.base_values[:, 0])
        indices = target.indices
        rows = np.arange(len(indices))
        if self.task == MULTICLASS:
            # values (n_rows, n_features, n_classes): pick one class per row.
            return _ClassView(attributions.values[rows, :, indices], attributions.base_values[rows, indices])
        # A binary model's single output explains the positive class (index 1). The negative
        # class has the opposite attributions, and its base value is 1 - base in probability
        # units and -base in margin units.
        sign = np.where(indices == 1, 1.0, -1.0)
        values = attributions.values[:, :, 0] * sign[:, None]
        base = attributions.base_values[:, 0]
        base = np.where(indices == 1, base, (1.0 - base) if self.units == PROBABILITY else -base)
        return _ClassView(values, base)

    def _lime(self, rows: pd.DataFrame, target: _Target, options: RequestOptions) -> LimeExplanation:
        if self.lime_explainer is None:
            raise InvalidParameterError(
                "Parameter 'explainers' asks for 'lime', but this model was saved without LIME state; "
                "save it again with this version of explainable_model."
            )
        # LIME explains class probabilities for classifiers, as lime does, and the prediction
        # for regressors. For a binary model, column 1 of predict_proba is the positive class.
        predict = self.estimator.predict if self.task == REGRESSION else self.estimator.predict_proba
        return self.lime_explainer.explain(
            rows,
            predict,
            labels=0 if target.indices is None else target.indices,
            seed=options.seed,
            num_samples=options.num_samples,
            num_features=options.num_features,
        )

    def _lime_columns(self, explanation: LimeExplanation, label: Any) -> dict[str, Any]:
        result = {
            columns.column_name(columns.LIME_INTERCEPT, class_label=label): explanation.intercept,
            columns.column_name(columns.LIME_LOCAL_PREDICTION, class_label=label): explanation.local_prediction,
            columns.column_name(columns.LIME_SCORE, class_label=label): explanation.score,
        }
        result.update(self._attribution_columns(columns.LIME, explanation.weights, label))
        return result

    def _attribution_columns(self, kind: str, values: np.ndarray, label: Any) -> dict[str, np.ndarray]:
        # values (n_rows, n_features): one column per raw feature.
        return {columns.column_name(kind, spec.name, label): values[:, f] for f, spec in enumerate(self.features)}

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
                _value_text(rows.iat[i, f], self.features[f]) for i, f in enumerate(picked)
            ]
            result[columns.reason_column(columns.REASON_ATTRIBUTION, rank + 1)] = values[np.arange(len(rows)), picked]
        return result


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _plain_array(values: Any) -> Any:
    array = np.asarray(values)
    return array if array.dtype != object else [_plain(value) for value in array]


def _value_text(value: Any, spec: FeatureSpec) -> str | None:
    value = json_value(value)
    if value is None:
        return None
    # An integer column holding a missing value arrives as float64, so 9 would read "9.0" in
    # that batch and "9" in another. An integer feature's whole values read as integers.
    if spec.dtype == "int64" and isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _json_safe(name: str, values: Any) -> Any:
    """Return a column's values with NaN, infinite and missing values as None.

    MLflow's scoring server writes NaN as a bare ``NaN`` token, which strict JSON parsers
    reject. A float column without such values stays a float64 array; one with them becomes an
    object column. A text column is kept as objects, because pandas 3 would store None as NaN in
    its ``str`` dtype.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        finite = np.isfinite(values)
        if finite.all():
            return values
        logger.warning("Output column %r has non-finite values; they are returned as null.", name)
        return pd.Series(values, dtype=object).where(finite, None)
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values
    return pd.Series(list(values), dtype=object)
