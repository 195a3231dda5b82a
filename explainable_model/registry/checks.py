"""The promotion checks: each measures one figure of a candidate version and compares it."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import Model
from mlflow.types import Schema
from scipy import stats
from sklearn import metrics as skmetrics

from explainable_model import output as columns
from explainable_model.engine import ExplanationEngine
from explainable_model.estimators import BINARY, MULTICLASS, REGRESSION, model_output
from explainable_model.exceptions import InvalidInputError, InvalidParameterError
from explainable_model.explainers import Attributions
from explainable_model.flavor import LoadedModel, load_model
from explainable_model.preparation import additivity_tolerance
from explainable_model.registry.report import ERROR, FAILED, PASSED, SKIPPED, CheckResult

logger = logging.getLogger(__name__)

CHECK_NAMES = ("loads", "schema", "quality", "additivity", "drift", "latency")
DEFAULT_BLOCKING = ("loads", "schema", "quality", "additivity", "drift")

# metric name -> whether a larger figure is better
METRICS = {"auc": True, "accuracy": True, "r2": True, "log_loss": False, "rmse": False, "mae": False}
AUTO_METRIC = "auto"
NO_HOLDER = "no holder: nothing to compare with"


@dataclass(frozen=True)
class CheckSettings:
    """Thresholds of the promotion checks; see :func:`explainable_model.registry.promote`."""

    metric: str = AUTO_METRIC
    quality_tolerance: float = 0.01
    min_quality: float | None = None
    additivity_tolerance: float | None = None
    min_drift_correlation: float = 0.5
    latency_budget_ms: float = 250.0
    latency_calls: int = 30
    latency_timeout_s: float = 60.0
    explain_rows: int = 200
    seed: int = 0
    blocking: tuple[str, ...] = DEFAULT_BLOCKING

    def check(self) -> None:
        """Raise InvalidParameterError for an invalid setting."""
        if self.metric != AUTO_METRIC and self.metric not in METRICS:
            raise InvalidParameterError(f"metric must be 'auto' or one of {sorted(METRICS)}, got {self.metric!r}.")
        unknown = sorted(set(self.blocking) - set(CHECK_NAMES))
        if unknown:
            raise InvalidParameterError(f"blocking names unknown checks {unknown}; choose from {list(CHECK_NAMES)}.")
        for name in ("quality_tolerance", "latency_budget_ms", "latency_timeout_s"):
            if not getattr(self, name) >= 0:
                raise InvalidParameterError(f"{name} must be 0 or more, got {getattr(self, name)!r}.")
        if self.additivity_tolerance is not None and not self.additivity_tolerance >= 0:
            raise InvalidParameterError(
                f"additivity_tolerance must be 0 or more, or None, got {self.additivity_tolerance!r}."
            )
        if not -1.0 <= self.min_drift_correlation <= 1.0:
            raise InvalidParameterError(
                f"min_drift_correlation must be between -1 and 1, got {self.min_drift_correlation!r}."
            )
        for name in ("latency_calls", "explain_rows"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InvalidParameterError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")


@dataclass
class CheckContext:
    """State shared by the checks: the loaded models, the validation data and cached results."""

    model_uri: str
    holder_uri: str | None
    features: pd.DataFrame
    target: pd.Series
    settings: CheckSettings
    candidate: LoadedModel | None = None
    holder: LoadedModel | None = None
    holder_error: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> LoadedModel:
        """The candidate model; only checks that run after ``loads`` passed use it."""
        if self.candidate is None:
            raise RuntimeError("the candidate model is not loaded")
        return self.candidate

    def explain_sample(self) -> pd.DataFrame:
        """Return the validation rows that the attribution checks explain, the same for both models."""
        if "sample" not in self.cache:
            n_rows = min(self.settings.explain_rows, len(self.features))
            self.cache["sample"] = self.features.sample(n=n_rows, random_state=self.settings.seed)
        return self.cache["sample"]

    def load_holder(self) -> LoadedModel | None:
        """Return the alias holder's model, loaded once; None when there is no holder."""
        if self.holder_uri is None or self.holder is not None or self.holder_error is not None:
            return self.holder
        try:
            self.holder = load_model(self.holder_uri)
        except Exception as error:  # noqa: BLE001 - any load failure is reported in the checks
            logger.warning("Could not load the alias holder %s: %s", self.holder_uri, error)
            self.holder_error = f"{type(error).__name__}: {error}"
        return self.holder


def model_rows(model: LoadedModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Return the columns of ``frame`` that ``model`` takes, in its order; other columns are ignored."""
    names = [spec.name for spec in model.engine.features]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"The validation data lacks columns that the model needs: {missing[:10]}; add them to the file."
        )
    return frame[names]


def _result(context: CheckContext, name: str, **values: Any) -> CheckResult:
    return CheckResult(name=name, blocking=name in context.settings.blocking, **values)


def check_loads(context: CheckContext) -> CheckResult:
    """Load the version from the registry by URI and score its stored input example."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as download:
        local = mlflow.artifacts.download_artifacts(artifact_uri=context.model_uri, dst_path=download)
        context.candidate = load_model(local)
        example = Model.load(local).load_input_example(local)
    seconds = time.perf_counter() - started
    if example is None:
        return _result(
            context,
            "loads",
            status=FAILED,
            unit="rows",
            message="loaded, but the model has no stored input example to score",
            details={"model_uri": context.model_uri, "load_seconds": seconds},
        )
    example = pd.DataFrame(example)
    scored = context.model.predict(example)
    ok = len(scored) == len(example) and bool(scored[columns.PREDICTION].notna().all())
    return _result(
        context,
        "loads",
        status=PASSED if ok else FAILED,
        figure=len(scored),
        unit="rows",
        message=(
            f"loaded {context.model_uri} and scored its input example"
            if ok
            else f"scored {len(scored)} rows for {len(example)} example rows, or returned missing predictions"
        ),
        details={"model_uri": context.model_uri, "example_rows": len(example), "load_seconds": round(seconds, 3)},
    )


def column_problems(candidate: Schema | None, holder: Schema | None) -> list[str]:
    """Return why requests that fit ``holder``'s input schema would not fit ``candidate``'s.

    A column fits when the candidate declares it with the same type, with ``any``, or with a
    wider integer type (``integer`` to ``long``). ``long`` to ``double`` is not accepted, because
    MLflow 3.17 rejects int64 values in a ``double`` column. A column that the candidate requires
    and the holder does not is a problem too, since callers of the holder do not send it.
    """
    if holder is None:
        return []
    if candidate is None:
        return ["the candidate has no input schema"]
    wider = {("integer", "long"), ("float", "double")}
    candidate_specs = {spec.name: spec for spec in candidate.inputs}
    holder_specs = {spec.name: spec for spec in holder.inputs}
    problems = []
    for name, spec in holder_specs.items():
        if not spec.required:
            continue
        other = candidate_specs.get(name)
        if other is None:
            problems.append(f"column {name!r} ({_type_name(spec)}) is missing")
            continue
        old, new = _type_name(spec), _type_name(other)
        if new != old and new != "any" and (old, new) not in wider:
            problems.append(f"column {name!r} changes type from {old} to {new}")
    for name, spec in candidate_specs.items():
        if spec.required and name not in holder_specs:
            problems.append(f"column {name!r} ({_type_name(spec)}) is new and required")
    return problems


def _summary(problems: list[str], limit: int = 3) -> str:
    more = len(problems) - limit
    return "; ".join(problems[:limit]) + (f"; and {more} more (see details)" if more > 0 else "")


def _type_name(spec: Any) -> str:
    kind = spec.type
    return getattr(kind, "name", None) or str(kind).lower()


def check_schema(context: CheckContext) -> CheckResult:
    """Compare the candidate's input schema with the holder's."""
    if context.holder_uri is None:
        return _result(
            context,
            "schema",
            status=PASSED,
            figure=0,
            threshold=0,
            comparison="<=",
            unit="incompatible columns",
            message=NO_HOLDER,
        )
    candidate = context.candidate.metadata.get_input_schema() if context.candidate else None
    holder = mlflow.models.get_model_info(context.holder_uri).signature
    problems = column_problems(candidate, holder.inputs if holder else None)
    return _result(
        context,
        "schema",
        status=PASSED if not problems else FAILED,
        figure=len(problems),
        threshold=0,
        comparison="<=",
        unit="incompatible columns",
        message=_summary(problems) if problems else "accepts every column the holder requires",
        details={"problems": problems},
    )


def resolve_metric(metric: str, task: str) -> str:
    """Return the metric that ``"auto"`` means for a task: AUC for classifiers, RMSE for regressors."""
    if metric != AUTO_METRIC:
        return metric
    return "rmse" if task == REGRESSION else "auc"


def score_metric(model: LoadedModel, metric: str, features: pd.DataFrame, target: pd.Series) -> float:
    """Return ``metric`` of ``model`` on the validation rows.

    AUC uses the positive class probability for binary models and the one-vs-rest macro
    average over the probabilities for multiclass ones. A binary classifier without
    probabilities is ranked by its decision function. Labels are compared as text, so a
    validation file read with other dtypes than the training data still matches.
    """
    engine = model.engine
    features = model_rows(model, features)
    scored = model.predict(features, params={"explainers": "none"})
    if metric in ("rmse", "mae", "r2"):
        if engine.task != REGRESSION:
            raise InvalidParameterError(
                f"metric {metric!r} needs a regressor; this model is a {engine.task} classifier."
            )
        truth = np.asarray(target, dtype="float64")
        predicted = np.asarray(scored[columns.PREDICTION], dtype="float64")
        if metric == "rmse":
            return float(np.sqrt(np.mean((truth - predicted) ** 2)))
        if metric == "mae":
            return float(np.mean(np.abs(truth - predicted)))
        return float(skmetrics.r2_score(truth, predicted))
    if engine.task == REGRESSION:
        raise InvalidParameterError(f"metric {metric!r} needs a classifier; use 'rmse', 'mae' or 'r2' for a regressor.")
    labels = [str(label) for label in engine.classes or []]
    truth = target.astype(str).to_numpy()
    unknown = sorted(set(truth) - set(labels))
    if unknown:
        raise InvalidParameterError(
            f"The target column contains labels that are not among the model's classes {labels}: {unknown[:5]}."
        )
    if metric == "accuracy":
        return float(np.mean(scored[columns.PREDICTION].astype(str).to_numpy() == truth))
    probability_columns = [
        columns.column_name(columns.PROBABILITY, class_label=label) for label in engine.classes or []
    ]
    has_probabilities = all(name in scored.columns for name in probability_columns)
    if metric == "log_loss":
        if not has_probabilities:
            raise InvalidParameterError("metric 'log_loss' needs class probabilities; this model has none.")
        return float(skmetrics.log_loss(truth, scored[probability_columns].to_numpy(dtype="float64"), labels=labels))
    if engine.task == BINARY:
        if has_probabilities:
            score = scored[probability_columns[1]].to_numpy(dtype="float64")
        else:
            score = model_output(engine.estimator, engine.prepare(features), "margin", engine.task)[:, 0]
        return float(skmetrics.roc_auc_score(truth == labels[1], score))
    if not has_probabilities:
        raise InvalidParameterError("AUC of a multiclass model needs class probabilities; use metric='accuracy'.")
    probabilities = scored[probability_columns].to_numpy(dtype="float64")
    return float(skmetrics.roc_auc_score(truth, probabilities, multi_class="ovr", average="macro", labels=labels))


def check_quality(context: CheckContext) -> CheckResult:
    """Compare the quality metric of the candidate with the holder's on the validation data."""
    settings = context.settings
    metric = resolve_metric(settings.metric, context.model.engine.task)
    higher_is_better = METRICS[metric]
    figure = score_metric(context.model, metric, context.features, context.target)
    details: dict[str, Any] = {"metric": metric, "rows": len(context.features), "higher_is_better": higher_is_better}
    problems = []
    if settings.min_quality is not None:
        details["min_quality"] = settings.min_quality
        if (figure < settings.min_quality) if higher_is_better else (figure > settings.min_quality):
            better = "at least" if higher_is_better else "at most"
            problems.append(f"{metric} {figure:.4g} is not {better} min_quality {settings.min_quality:.4g}")

    holder = context.load_holder()
    threshold = settings.min_quality
    message = f"{metric} {figure:.4g}; {NO_HOLDER}"
    if context.holder_uri is not None:
        if holder is None:
            raise RuntimeError(f"the holder could not be loaded: {context.holder_error}")
        holder_figure = score_metric(holder, metric, context.features, context.target)
        allowance = settings.quality_tolerance * abs(holder_figure)
        threshold = holder_figure - allowance if higher_is_better else holder_figure + allowance
        details.update(holder_figure=holder_figure, tolerance=settings.quality_tolerance)
        message = f"{metric} {figure:.4g} vs holder {holder_figure:.4g}"
        if (figure < threshold) if higher_is_better else (figure > threshold):
            problems.append(
                f"{metric} {figure:.4g} is worse than the holder's {holder_figure:.4g} by more than "
                f"{settings.quality_tolerance:.0%}"
            )
    comparison = ""
    if threshold is not None:
        comparison = ">=" if higher_is_better else "<="
    return _result(
        context,
        "quality",
        status=FAILED if problems else PASSED,
        figure=figure,
        threshold=threshold,
        comparison=comparison,
        unit=metric,
        message="; ".join(problems) if problems else message,
        details=details,
    )


def _shap_frame(model: LoadedModel, sample: pd.DataFrame) -> pd.DataFrame:
    params = {"explainers": "shap", "top_k": 0, "explained_class": "auto"}
    return model.predict(model_rows(model, sample), params=params)


def _attribution_matrix(scored: pd.DataFrame, engine: ExplanationEngine) -> np.ndarray:
    names = [columns.column_name(columns.SHAP, spec.name) for spec in engine.features]
    return scored[names].to_numpy(dtype="float64")


def check_additivity(context: CheckContext) -> CheckResult:
    """Compare base value plus attributions with the model's own output on validation rows."""
    model = context.model
    engine = model.engine
    sample = context.explain_sample()
    scored = _shap_frame(model, sample)
    context.cache["candidate_scored"] = scored
    values = _attribution_matrix(scored, engine)
    base = scored[columns.SHAP_BASE_VALUE].to_numpy(dtype="float64")
    rows = engine.prepare(model_rows(model, sample))
    output = model_output(engine.estimator, rows, engine.units, engine.task)
    if engine.task == MULTICLASS:
        text = [str(label) for label in engine.classes or []]
        picked = np.array([text.index(label) for label in scored[columns.EXPLAINED_CLASS]])
        expected = output[np.arange(len(rows)), picked]
    else:
        expected = output[:, 0]
    errors = np.abs(base + values.sum(axis=1) - expected)
    error = float(np.max(errors)) if np.all(np.isfinite(errors)) else float("inf")
    tolerance = context.settings.additivity_tolerance
    if tolerance is None:
        tolerance = additivity_tolerance(engine, rows, Attributions(values[:, :, None], base[:, None]))

    stored = model.config.get("additivity", {})
    ok = error <= tolerance
    return _result(
        context,
        "additivity",
        status=PASSED if ok else FAILED,
        figure=error,
        threshold=tolerance,
        comparison="<=",
        unit=engine.units,
        message=(
            f"base value + attributions = model output on {len(rows)} rows"
            if ok
            else f"attributions miss the model output by up to {error:.3g} {engine.units} on {len(rows)} rows"
        ),
        details={
            "rows": len(rows),
            "method": engine.explainer.method,
            "exact": engine.explainer.exact,
            "saved_max_error": stored.get("max_error"),
            "saved_rows": stored.get("rows"),
        },
    )


def _importance(scored: pd.DataFrame, engine: ExplanationEngine) -> pd.Series:
    values = _attribution_matrix(scored, engine)
    return pd.Series(np.abs(values).mean(axis=0), index=[spec.name for spec in engine.features])


def check_drift(context: CheckContext) -> CheckResult:
    """Rank-correlate mean absolute attribution per feature between the candidate and the holder."""
    threshold = context.settings.min_drift_correlation
    if context.holder_uri is None:
        return _result(context, "drift", status=PASSED, threshold=threshold, comparison=">=", message=NO_HOLDER)
    holder = context.load_holder()
    if holder is None:
        raise RuntimeError(f"the holder could not be loaded: {context.holder_error}")
    sample = context.explain_sample()
    candidate_scored = context.cache.get("candidate_scored")
    if candidate_scored is None:
        candidate_scored = _shap_frame(context.model, sample)
    mine = _importance(candidate_scored, context.model.engine)
    theirs = _importance(_shap_frame(holder, sample), holder.engine)

    shared = [name for name in mine.index if name in theirs.index]
    details: dict[str, Any] = {
        "rows": len(sample),
        "shared_features": len(shared),
        "candidate_top": _top(mine),
        "holder_top": _top(theirs),
    }
    if len(shared) < 2:
        return _result(
            context,
            "drift",
            status=FAILED,
            threshold=threshold,
            comparison=">=",
            message=f"the models share {len(shared)} features; a rank correlation needs 2 or more",
            details=details,
        )

    rho = float(stats.spearmanr(mine[shared], theirs[shared]).statistic)
    if not np.isfinite(rho):
        rho = float("nan")
    ok = bool(rho >= threshold)
    return _result(
        context,
        "drift",
        status=PASSED if ok else FAILED,
        figure=rho,
        threshold=threshold,
        comparison=">=",
        unit="spearman",
        message=(
            f"feature importance ranks agree with the holder's over {len(shared)} features"
            if ok
            else f"feature importance ranks moved away from the holder's over {len(shared)} features"
            + ("" if np.isfinite(rho) else " (constant importances give no correlation)")
        ),
        details=details,
    )


def _top(importance: pd.Series, n: int = 5) -> dict[str, float]:
    return {str(name): float(value) for name, value in importance.sort_values(ascending=False).head(n).items()}


def check_latency(context: CheckContext) -> CheckResult:
    """Time single-row predict-and-explain calls in this process, with the model's default parameters."""
    settings = context.settings
    row = model_rows(context.model, context.features).iloc[[0]]
    context.model.predict(row)  # the first call fills caches; it is not timed
    durations: list[float] = []
    deadline = time.monotonic() + settings.latency_timeout_s
    while len(durations) < settings.latency_calls and time.monotonic() < deadline:
        started = time.perf_counter()
        context.model.predict(row)
        durations.append((time.perf_counter() - started) * 1000.0)
    p50 = float(np.percentile(durations, 50))
    ok = p50 <= settings.latency_budget_ms
    return _result(
        context,
        "latency",
        status=PASSED if ok else FAILED,
        figure=p50,
        threshold=settings.latency_budget_ms,
        comparison="<=",
        unit="ms",
        message=f"p50 of {len(durations)} single-row calls" + ("" if ok else " is over the budget"),
        details={"calls": len(durations), "p95_ms": float(np.percentile(durations, 95)), "max_ms": max(durations)},
    )


CHECKS: dict[str, Callable[[CheckContext], CheckResult]] = {
    "loads": check_loads,
    "schema": check_schema,
    "quality": check_quality,
    "additivity": check_additivity,
    "drift": check_drift,
    "latency": check_latency,
}


def run_check(name: str, context: CheckContext) -> CheckResult:
    """Run one check; an exception becomes an ``error`` result, and a check without a loaded
    candidate is ``skipped``."""
    blocking = name in context.settings.blocking
    if name != "loads" and context.candidate is None:
        return CheckResult(name, SKIPPED, blocking, message="skipped: the candidate did not load")
    try:
        return CHECKS[name](context)
    except Exception as error:  # noqa: BLE001 - a failing check is recorded, not raised
        logger.warning("Promotion check %r raised %s: %s", name, type(error).__name__, error)
        return CheckResult(name, ERROR, blocking, message=f"{type(error).__name__}: {error}")
