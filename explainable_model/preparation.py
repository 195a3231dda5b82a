"""Everything computed from save_model's arguments before a file is written.

Arguments are checked, the explainers built and the additivity of exact SHAP tested here, so
an invalid call fails before anything is written, logged or registered.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature

from explainable_model.engine import ExplanationEngine
from explainable_model.estimators import REGRESSION, check_fitted, detect_task, final_estimator, model_output
from explainable_model.exceptions import AdditivityError, InvalidInputError, InvalidParameterError
from explainable_model.explainers import (
    SHAP_METHODS,
    Attributions,
    build_shap_explainer,
    choose_shap_method,
    shap_units,
)
from explainable_model.explainers.factory import OUTPUT_SPACES, transformed_groups
from explainable_model.explainers.lime import LimeExplainer, LimeSettings
from explainable_model.features import FeatureSpec, coerce_frame, describe_features
from explainable_model.native import adopt_feature_names, to_booster_model
from explainable_model.params import DEFAULT_MAX_ROWS, ExplanationSettings, parse_explainers
from explainable_model.persistence import SERIALIZATION_FORMATS
from explainable_model.signature import build_signature

logger = logging.getLogger(__name__)

# An exact method passes the additivity check when base value plus attributions match the
# model output to this tolerance, scaled by the output's magnitude when it is above 1.
ADDITIVITY_TOLERANCE = 1e-6
FLOAT32_RELATIVE_TOLERANCE = 1e-5
_ADDITIVITY_ROWS_EXACT = 200
_ADDITIVITY_ROWS_SAMPLED = 20
_EXAMPLE_ROWS = 5
_DEFAULT_LIME_FEATURES = 10
_UINT64_MASK = 2**64 - 1


@dataclass(frozen=True)
class SaveOptions:
    """The explanation arguments of :func:`explainable_model.save_model`; see its docstring."""

    explainers: str | tuple[str, ...] = ("shap",)
    shap_method: str = "auto"
    background_size: int = 100
    shap_orderings: int = 10
    max_shap_orderings: int = 100
    lime_settings: dict[str, Any] = field(default_factory=dict)
    max_num_samples: int = 20_000
    top_k: int = 0
    seed: int = 0
    serialization_format: str = "auto"
    shap_n_jobs: int | None = None
    output_space: str = "raw"
    max_rows: int | None = DEFAULT_MAX_ROWS

    def explainer_names(self) -> str:
        names = self.explainers if isinstance(self.explainers, str) else ",".join(self.explainers)
        return names or "none"

    def check(self) -> None:
        """Raise :class:`InvalidParameterError` for the first invalid option."""
        parse_explainers(self.explainer_names(), quote_unknown=True)
        if self.shap_method not in SHAP_METHODS:
            raise InvalidParameterError(f"shap_method must be one of {SHAP_METHODS}, got {self.shap_method!r}.")
        _check_positive("background_size", self.background_size)
        _check_positive("max_shap_orderings", self.max_shap_orderings)
        _check_positive("max_num_samples", self.max_num_samples)
        if not isinstance(self.shap_orderings, int) or not 1 <= self.shap_orderings <= self.max_shap_orderings:
            raise InvalidParameterError(
                f"shap_orderings must be an integer between 1 and max_shap_orderings={self.max_shap_orderings}, "
                f"got {self.shap_orderings!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidParameterError(f"seed must be an integer, got {self.seed!r}.")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise InvalidParameterError(f"top_k must be a non-negative integer, got {self.top_k!r}.")
        accepted = sorted(set(LimeSettings.__dataclass_fields__) - {"mode"})
        if not isinstance(self.lime_settings, dict) or not set(self.lime_settings) <= set(accepted):
            raise InvalidParameterError(
                f"lime_settings must be a dict with keys among {accepted} ('mode' follows the estimator's "
                f"task); got {self.lime_settings!r}."
            )
        if self.output_space not in OUTPUT_SPACES:
            raise InvalidParameterError(f"output_space must be one of {OUTPUT_SPACES}, got {self.output_space!r}.")
        if self.shap_n_jobs is not None:
            _check_positive("shap_n_jobs", self.shap_n_jobs)
        if self.max_rows is not None:
            _check_positive("max_rows", self.max_rows)
        if self.serialization_format not in SERIALIZATION_FORMATS:
            raise InvalidParameterError(
                f"serialization_format must be one of {SERIALIZATION_FORMATS}, got {self.serialization_format!r}."
            )


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}.")


@dataclass
class Prepared:
    """The engine, state and signature of a model, ready to be written."""

    estimator: Any
    engine: ExplanationEngine
    lime_explainer: LimeExplainer
    features: list[FeatureSpec]
    background: pd.DataFrame
    check_rows: pd.DataFrame
    method: str
    additivity_error: float
    additivity_rows: int
    signature: ModelSignature
    input_example: pd.DataFrame


def _check_background(background_data: Any) -> None:
    if not isinstance(background_data, pd.DataFrame) or background_data.empty:
        raise InvalidParameterError(
            "background_data must be a non-empty pandas DataFrame of raw training rows, with the "
            f"columns the estimator was fitted on; got {type(background_data).__name__}."
        )
    if background_data.columns.duplicated().any():
        duplicated = sorted({str(c) for c in background_data.columns[background_data.columns.duplicated()]})
        raise InvalidParameterError(f"background_data has duplicated columns: {duplicated}.")


def _ordered_features(estimator: Any, background_data: pd.DataFrame) -> pd.DataFrame:
    """Return background_data with columns in the order the estimator was fitted on."""
    frame = background_data.rename(columns=str)
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None:
        logger.warning(
            "%s was fitted without feature names; its columns are taken in background_data's order.",
            type(estimator).__name__,
        )
        return frame
    fitted = [str(name) for name in fitted]
    if adopt_feature_names(estimator, list(frame.columns)):
        return frame
    missing = [name for name in fitted if name not in frame.columns]
    unexpected = [name for name in frame.columns if name not in fitted]
    if missing or unexpected:
        raise InvalidParameterError(
            "background_data columns differ from the estimator's feature_names_in_: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}. Pass the raw training columns."
        )
    return frame[fitted]


def _accepts_missing(estimator: Any, rows: pd.DataFrame, name: str) -> bool:
    probe = rows.copy()
    # where() with an all-False mask fills with the dtype's own missing value, so a category
    # column stays a category column.
    probe[name] = probe[name].where(np.zeros(len(probe), dtype=bool))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.predict(probe)
    except (ValueError, TypeError, KeyError, IndexError):
        return False
    return True


def _sample_rows(frame: pd.DataFrame, n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Return up to ``n_rows`` distinct rows of ``frame`` in random order, with a fresh index."""
    picked = rng.choice(len(frame), size=min(n_rows, len(frame)), replace=False)
    return frame.iloc[picked].reset_index(drop=True)


def _example_rows(background: pd.DataFrame) -> pd.DataFrame:
    complete = background.dropna()
    rows = complete if len(complete) >= _EXAMPLE_ROWS else background
    return rows.iloc[:_EXAMPLE_ROWS].reset_index(drop=True)


def _build_lime(frame: pd.DataFrame, features: list[FeatureSpec], task: str, options: SaveOptions) -> LimeExplainer:
    settings = dict(options.lime_settings)
    settings.setdefault("num_features", min(_DEFAULT_LIME_FEATURES, len(features)))
    mode = "regression" if task == REGRESSION else "classification"
    explainer = LimeExplainer.from_training_data(frame, features, mode, **settings)
    if explainer.settings.num_samples > options.max_num_samples:
        raise InvalidParameterError(
            f"lime_settings num_samples={explainer.settings.num_samples} is above "
            f"max_num_samples={options.max_num_samples}; lower it or raise the limit."
        )
    if explainer.settings.num_features > len(features):
        raise InvalidParameterError(
            f"lime_settings num_features={explainer.settings.num_features} is above the "
            f"{len(features)} features of the model."
        )
    return explainer


def prepare(
    estimator: Any,
    background_data: pd.DataFrame,
    options: SaveOptions,
    signature: ModelSignature | None,
    input_example: pd.DataFrame | None,
) -> Prepared:
    """Check the arguments, build the explainers and test them, writing nothing.

    Raises
    ------
    InvalidParameterError, UnsupportedEstimatorError, AdditivityError
        As documented in :func:`explainable_model.save_model`.
    """
    _check_background(background_data)
    options.check()
    estimator = to_booster_model(estimator)
    check_fitted(estimator)

    frame = _ordered_features(estimator, background_data).reset_index(drop=True)
    task, classes = detect_task(estimator)
    features = describe_features(frame)
    probe_rows = frame.iloc[: min(len(frame), 5)]
    for spec in features:
        spec.accepts_missing = _accepts_missing(estimator, probe_rows, spec.name)
    try:
        frame = coerce_frame(frame, features)
    except InvalidInputError as err:
        raise InvalidParameterError(f"background_data cannot be used: {err}") from err
    rng = np.random.default_rng(options.seed & _UINT64_MASK)
    background = _sample_rows(frame, options.background_size, rng)

    lime_explainer = _build_lime(frame, features, task, options)
    settings = ExplanationSettings(
        explainers=options.explainer_names(),
        top_k=options.top_k,
        seed=options.seed,
        shap_orderings=options.shap_orderings,
        max_shap_orderings=options.max_shap_orderings,
        num_samples=lime_explainer.settings.num_samples,
        max_num_samples=options.max_num_samples,
        num_features=lime_explainer.settings.num_features,
        n_jobs=options.shap_n_jobs,
        max_rows=options.max_rows,
    )
    groups = transformed_groups(estimator, background, len(features))
    method = choose_shap_method(estimator, groups is not None) if options.shap_method == "auto" else options.shap_method
    units = shap_units(estimator, method, task, options.output_space)
    explainer = build_shap_explainer(
        estimator,
        method,
        task,
        units,
        features,
        background,
        n_orderings=options.shap_orderings,
        n_jobs=options.shap_n_jobs,
    )
    engine = ExplanationEngine(estimator, features, task, classes, units, explainer, settings, lime_explainer)
    logger.info("Explaining %s with %s SHAP in %s units.", type(final_estimator(estimator)).__name__, method, units)

    n_check = _ADDITIVITY_ROWS_EXACT if explainer.exact else _ADDITIVITY_ROWS_SAMPLED
    check_rows = _sample_rows(frame, n_check, rng)
    error = _check_additivity(engine, check_rows, method)

    example = _example_rows(background) if input_example is None else coerce_frame(input_example, features)
    example_output = engine.predict(example)
    built = build_signature(features, settings, example_output)
    if signature is not None:
        built = _merge_signature(signature, built)
    return Prepared(
        estimator,
        engine,
        lime_explainer,
        features,
        background,
        check_rows,
        method,
        error,
        len(check_rows),
        built,
        example,
    )


def additivity_tolerance(engine: ExplanationEngine, rows: pd.DataFrame, attributions: Attributions) -> float:
    """Return the largest additivity error accepted for an exact explainer on ``rows``.

    It is ADDITIVITY_TOLERANCE, scaled by the mean absolute model output when that is above 1.
    An explainer that computes in float32 (XGBoost's contributions) is allowed
    FLOAT32_RELATIVE_TOLERANCE times the largest ``|base value| + sum(|attributions|)``, the
    rounding that float32 sums can reach.
    """
    output = model_output(engine.estimator, rows, engine.units, engine.task)
    tolerance = ADDITIVITY_TOLERANCE * max(1.0, float(np.mean(np.abs(output))))
    if engine.explainer.single_precision:
        magnitude = np.abs(attributions.base_values) + np.abs(attributions.values).sum(axis=1)
        tolerance = max(tolerance, FLOAT32_RELATIVE_TOLERANCE * float(magnitude.max()))
    return tolerance


def _check_additivity(engine: ExplanationEngine, rows: pd.DataFrame, method: str) -> float:
    rows = engine.prepare(rows)
    attributions = engine.explainer.explain(rows, seed=engine.settings.seed)
    expected = model_output(engine.estimator, rows, engine.units, engine.task)
    error = float(np.max(np.abs(attributions.output() - expected)))
    logger.info("Largest additivity error of %s SHAP on %d rows: %.3g.", method, len(rows), error)
    tolerance = additivity_tolerance(engine, rows, attributions)
    if engine.explainer.exact and error > tolerance:
        raise AdditivityError(
            f"{method} SHAP attributions do not add up to the model output: base value plus "
            f"attributions differ from it by up to {error:.3g} {engine.units} on {len(rows)} "
            f"background rows (tolerance {tolerance:.3g}). The explainer does not match this "
            "estimator; save with shap_method='permutation' to explain it model-agnostically."
        )
    return error


def _merge_signature(user: ModelSignature, built: ModelSignature) -> ModelSignature:
    names = user.inputs.input_names() if user.inputs is not None else []
    expected = built.inputs.input_names()
    if sorted(map(str, names)) != sorted(expected):
        raise InvalidParameterError(
            f"signature inputs {names[:5]} do not match the features {expected[:5]}; pass a signature "
            "whose input columns are the raw features, or none to have it built."
        )
    return ModelSignature(inputs=user.inputs, outputs=built.outputs, params=built.params)
