"""Promote a registered model version to an alias: run the checks, store the report, move the alias last."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

# MLflow's own alias rules (allowed characters, length, the reserved "latest" and "v<N>"), checked
# before any work so that a dry run rejects an alias the real promotion could not set.
from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

from explainable_model.exceptions import InvalidParameterError, PromotionError
from explainable_model.registry.checks import (
    AUTO_METRIC,
    CHECK_NAMES,
    DEFAULT_BLOCKING,
    CheckContext,
    CheckSettings,
    run_check,
)
from explainable_model.registry.lock import AliasLock
from explainable_model.registry.report import (
    CONFLICT,
    DRY_RUN,
    INTERRUPTED,
    MOVING,
    PROMOTED,
    REJECTED,
    CheckResult,
    PromotionReport,
)

logger = logging.getLogger(__name__)

REPORT_FOLDER = "promotion"
TAG_PREFIX = "promotion."


def read_validation_data(data: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Return ``data``, reading it first when it is the path of a .csv or .parquet file."""
    if isinstance(data, pd.DataFrame):
        return data
    path = Path(data)
    if not path.is_file():
        raise PromotionError(f"validation data {str(path)!r} is not a file; pass a .csv or .parquet file.")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise PromotionError(f"validation data {str(path)!r} must end in .csv or .parquet.")


def current_holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """Return the version that ``alias`` points to, or None when it points to none.

    ``search_model_versions`` returns versions with empty ``aliases``, so the alias is read
    with ``get_model_version_by_alias``.
    """
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as error:
        # MLflow 3.17's SQL store reports a missing alias as INVALID_PARAMETER_VALUE "... not found".
        missing_alias = error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in error.message
        if error.error_code == "RESOURCE_DOES_NOT_EXIST" or missing_alias:
            return None
        raise


def check_alias(alias: str) -> None:
    """Raise InvalidParameterError for an alias that MLflow would reject when moving it."""
    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
    except MlflowException as error:
        raise InvalidParameterError(f"alias {alias!r} is invalid: {error.message}") from error


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def promote(
    name: str,
    version: str | int,
    alias: str = "champion",
    *,
    validation_data: pd.DataFrame | str | Path,
    target: str,
    metric: str = AUTO_METRIC,
    quality_tolerance: float = 0.01,
    min_quality: float | None = None,
    additivity_tolerance: float | None = None,
    min_drift_correlation: float = 0.5,
    latency_budget_ms: float = 250.0,
    latency_calls: int = 30,
    explain_rows: int = 200,
    blocking: Iterable[str] = DEFAULT_BLOCKING,
    dry_run: bool = False,
    on_check: Callable[[CheckResult], None] | None = None,
    lock_timeout_s: float = 60.0,
    client: MlflowClient | None = None,
) -> PromotionReport:
    """Check a registered model version and move ``alias`` to it if every blocking check passed.

    The checks run in this order:

    - ``loads``: the version loads by its ``models:/`` URI and scores its stored input example.
    - ``schema``: it accepts every input column the alias holder requires, with compatible types.
    - ``quality``: its metric on the validation data is not worse than the holder's beyond
      ``quality_tolerance``.
    - ``additivity``: base value plus SHAP attributions equal the model's own output.
    - ``drift``: the Spearman correlation of mean absolute attribution per feature with the
      holder's is at least ``min_drift_correlation``.
    - ``latency``: the median single-row predict-and-explain time is within the budget.

    Without a holder, the comparisons pass with the note "no holder".

    The report is stored as JSON and HTML artifacts of the version's run, under
    ``promotion/<alias>/``, and summarized in ``promotion.*`` tags on the version. Then, under
    a lock on the alias, the holder is read again: if another promotion moved the alias since
    the checks started, the status is ``conflict`` and nothing moves. The alias moves last.
    A dry run stores nothing and moves nothing.

    Parameters
    ----------
    name : str
        Registered model name.
    version : str or int
        Version to promote.
    alias : str
        Alias to move.
    validation_data : pandas.DataFrame or path
        Rows with the raw features and ``target``; a .csv or .parquet path is read.
    target : str
        Column of ``validation_data`` with the true label or value.
    metric : {"auto", "auc", "accuracy", "log_loss", "rmse", "mae", "r2"}
        Quality metric; ``"auto"`` is AUC for classifiers (one-vs-rest macro AUC for
        multiclass) and RMSE for regressors.
    quality_tolerance : float
        How much worse than the holder's the candidate's metric may be, as a fraction of the
        holder's figure: 0.01 lets an AUC of 0.80 drop to 0.792.
    min_quality : float, optional
        A floor (or a ceiling, for error metrics) on the metric that applies even without a holder.
    additivity_tolerance : float, optional
        Largest accepted ``|base value + sum(attributions) - model output|``, in attribution
        units. By default the save-time rule: 1e-6 times the mean absolute output when that is
        above 1, and float32 rounding for XGBoost.
    min_drift_correlation : float
        Smallest accepted Spearman correlation of the feature importance ranks.
    latency_budget_ms : float
        Largest accepted median single-row predict-and-explain time, in milliseconds.
    latency_calls : int
        Timed calls; the loop also stops after 60 seconds.
    explain_rows : int
        Validation rows (a seeded sample) that the additivity and drift checks explain.
    blocking : iterable of str
        Checks that must pass for the alias to move; by default all but ``latency``.
    dry_run : bool
        Run the checks and return the report without storing it or moving the alias.
    on_check : callable, optional
        Called with each :class:`CheckResult` as soon as it is known.
    lock_timeout_s : float
        Seconds to wait for the alias lock that another promotion holds.
    client : mlflow.MlflowClient, optional
        By default a client for the current tracking and registry URIs.

    Returns
    -------
    PromotionReport

    Raises
    ------
    PromotionError
        If the version does not exist, the validation data lacks ``target``, or the alias lock
        stays busy; the alias does not move.
    InvalidParameterError
        If a threshold, check name or the alias is invalid.
    """
    settings = CheckSettings(
        metric=metric,
        quality_tolerance=quality_tolerance,
        min_quality=min_quality,
        additivity_tolerance=additivity_tolerance,
        min_drift_correlation=min_drift_correlation,
        latency_budget_ms=latency_budget_ms,
        latency_calls=latency_calls,
        explain_rows=explain_rows,
        blocking=tuple(blocking),
    )
    settings.check()
    check_alias(alias)
    client = client or MlflowClient()
    version = str(version)
    model_version = _get_version(client, name, version)
    frame = read_validation_data(validation_data)
    if target not in frame.columns:
        raise PromotionError(
            f"target column {target!r} is not in the validation data; its columns are {list(frame.columns)[:20]}."
        )
    if len(frame) == 0:
        raise PromotionError("the validation data has no rows.")

    holder_at_start = current_holder(client, name, alias)
    report = PromotionReport(name, version, alias, INTERRUPTED, holder_at_start, started_at=_now())
    logger.info("Promoting %s version %s to %r; holder: %s.", name, version, alias, holder_at_start or "none")
    context = CheckContext(
        model_uri=f"models:/{name}/{version}",
        holder_uri=None if holder_at_start is None else f"models:/{name}/{holder_at_start}",
        features=frame.drop(columns=[target]),
        target=frame[target],
        settings=settings,
    )
    alias_moved = False
    try:
        for check_name in CHECK_NAMES:
            result = run_check(check_name, context)
            report.checks.append(result)
            logger.info("Check %s: %s (%s)", result.name, result.status, result.message)
            if on_check is not None:
                on_check(result)

        if dry_run:
            report.status = DRY_RUN
            report.message = "Dry run: nothing was stored and the alias did not move."
            report.finished_at = _now()
            return report
        if not report.passed:
            report.status = REJECTED
            report.message = f"Blocking checks failed: {', '.join(report.blocking_failures)}. The alias did not move."
            _store(client, report, model_version)
            return report

        owner = f"version {version} on {socket.gethostname()} pid {os.getpid()}"
        with AliasLock(client, name, alias, owner, timeout_s=lock_timeout_s):
            report.holder_at_move = current_holder(client, name, alias)
            if report.holder_at_move != holder_at_start:
                report.status = CONFLICT
                report.message = (
                    f"The alias moved from {_text(holder_at_start)} to {_text(report.holder_at_move)} while the "
                    "checks ran, so this promotion did not move it; promote again to compare with the new holder."
                )
                _store(client, report, model_version)
                return report
            # The report is stored before and after the move, so that a process killed around
            # the move leaves a "moving" report and tags, never a "promoted" one that is untrue.
            report.status = MOVING
            report.message = (
                f"Checks passed; moving alias '{alias}' from {_text(holder_at_start)} to version {version}. "
                "Without a later 'promoted' report, the process stopped around the move: "
                "get_model_version_by_alias tells where the alias points."
            )
            _store(client, report, model_version)
            client.set_registered_model_alias(name, alias, version)
            alias_moved = True
            report.status = PROMOTED
            report.message = f"Alias '{alias}' moved from {_text(holder_at_start)} to version {version}."
            _store(client, report, model_version)
        logger.info("Moved %r of %s to version %s.", alias, name, version)
        return report
    except BaseException as error:
        if not alias_moved:
            report.status = INTERRUPTED
            report.message = f"Interrupted by {type(error).__name__}: {error}. The alias did not move."
            try:
                _store(client, report, model_version)
            except Exception as store_error:  # noqa: BLE001 - the original error is what matters
                logger.error("Could not store the report of the interrupted promotion: %s", store_error)
        raise


def _text(version: str | None) -> str:
    return "no version" if version is None else f"version {version}"


def _get_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise PromotionError(f"registered model {name!r} has no version {version!r}: {error.message}") from error
        raise


def _report_run(client: MlflowClient, model_version: ModelVersion) -> str:
    """Return the run that keeps the reports: the version's own, or a new one for a version without a run."""
    if model_version.run_id:
        return model_version.run_id
    experiment = client.get_experiment_by_name("Default")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("Default")
    run = client.create_run(experiment_id, run_name=f"promotion-{model_version.name}-v{model_version.version}")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _store(client: MlflowClient, report: PromotionReport, model_version: ModelVersion) -> None:
    """Store the report as JSON and HTML artifacts and summarize it in tags on the version."""
    report.finished_at = _now()
    run_id = _report_run(client, model_version)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    stem = f"{REPORT_FOLDER}/{report.alias}/{stamp}-v{report.version}-{report.status}-{uuid.uuid4().hex[:8]}"
    report.report_uri = f"runs:/{run_id}/{stem}.json"
    client.log_text(run_id, report.to_json(), f"{stem}.json")
    client.log_text(run_id, report.to_html(), f"{stem}.html")
    tags = {
        "status": report.status,
        "alias": report.alias,
        "checks_failed": ",".join(report.failed_checks) or "none",
        "holder_at_start": report.holder_at_start or "none",
        "report": report.report_uri,
        "finished_at": report.finished_at,
    }
    for key, value in tags.items():
        client.set_model_version_tag(report.model_name, report.version, TAG_PREFIX + key, value)
    logger.info("Stored the promotion report at %s.", report.report_uri)
