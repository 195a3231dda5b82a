"""Registry promotion against MLflow's SQLite store: checks, reports, tags, the alias, races."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

import explainable_model as em
from explainable_model.cli import main
from explainable_model.registry.checks import column_problems
from explainable_model.registry.lock import lock_name
from tests.promotion_utils import TARGET, contend_for_lock, fit_models, race, register, split_credit

NAME = "credit"
FAST = {"latency_calls": 5, "explain_rows": 100}


@pytest.fixture(scope="module")
def credit_split(credit_frame):
    return split_credit(credit_frame)


@pytest.fixture(scope="module")
def models(credit_split):
    return fit_models(credit_split[0])


@pytest.fixture
def holder(models, credit_split):
    """Version 1 of NAME, the 'small' model, holding 'champion'."""
    info = register(models["small"], credit_split[0], NAME)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", info.registered_model_version)
    return str(info.registered_model_version)


def _client() -> mlflow.MlflowClient:
    return mlflow.MlflowClient()


def _stored_report(report: em.PromotionReport) -> dict:
    return json.loads(mlflow.artifacts.load_text(report.report_uri))


def test_promote_without_holder_then_over_it(models, credit_split):
    train, validation = credit_split
    first = str(register(models["small"], train, NAME).registered_model_version)

    report = em.promote(NAME, first, validation_data=validation, target=TARGET, **FAST)

    assert report.status == "promoted"
    assert report.holder_at_start is None
    assert em.current_holder(_client(), NAME, "champion") == first
    assert [check.name for check in report.checks] == ["loads", "schema", "quality", "additivity", "drift", "latency"]
    assert report.check("schema").message.startswith("no holder")
    assert report.check("drift").message.startswith("no holder")
    assert report.check("quality").figure > 0.75
    assert report.check("additivity").figure < 1e-6
    assert report.check("loads").figure == 5

    second = str(register(models["large"], train, NAME).registered_model_version)
    report = em.promote(NAME, second, validation_data=validation, target=TARGET, **FAST)

    assert report.status == "promoted"
    assert report.holder_at_start == first
    assert report.holder_at_move == first
    assert em.current_holder(_client(), NAME, "champion") == second
    assert report.check("quality").details["holder_figure"] < report.check("quality").figure
    assert report.check("drift").figure > 0.5
    assert report.check("schema").figure == 0


def test_report_stored_with_version_and_tags(models, credit_split, holder):
    train, validation = credit_split
    version = str(register(models["large"], train, NAME).registered_model_version)

    report = em.promote(NAME, version, validation_data=validation, target=TARGET, **FAST)
    tags = _client().get_model_version(NAME, version).tags
    run_id = _client().get_model_version(NAME, version).run_id
    stored = _stored_report(report)
    page = mlflow.artifacts.load_text(report.report_uri.replace(".json", ".html"))

    assert report.report_uri.startswith(f"runs:/{run_id}/promotion/champion/")
    assert stored == report.to_dict()
    assert stored["status"] == "promoted"
    assert tags["promotion.status"] == "promoted"
    assert tags["promotion.alias"] == "champion"
    assert tags["promotion.checks_failed"] == "none"
    assert tags["promotion.holder_at_start"] == holder
    assert tags["promotion.report"] == report.report_uri
    assert "PROMOTED credit version 2 -&gt; alias &#x27;champion&#x27;" in page
    assert em.PromotionReport.from_dict(stored).to_text() == report.to_text()


def test_moving_report_precedes_promoted(models, credit_split, holder):
    train, validation = credit_split
    version = str(register(models["large"], train, NAME).registered_model_version)

    report = em.promote(NAME, version, validation_data=validation, target=TARGET, **FAST)
    run_id = _client().get_model_version(NAME, version).run_id
    names = sorted(a.path for a in _client().list_artifacts(run_id, "promotion/champion") if a.path.endswith(".json"))
    statuses = [json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{name}"))["status"] for name in names]
    moving = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/{names[0]}"))

    assert statuses == ["moving", "promoted"]
    assert report.report_uri == f"runs:/{run_id}/{names[1]}"
    assert moving["holder_at_move"] == holder
    assert "get_model_version_by_alias" in moving["message"]


def _altered_version(models, train) -> str:
    """Register a model, then change a byte of its stored background data."""
    info = register(models["large"], train, NAME)
    location = Path(mlflow.get_logged_model(info.model_id).artifact_location.removeprefix("file://"))
    background = next(location.rglob("*.parquet"))
    background.write_bytes(background.read_bytes() + b"\0")
    return str(info.registered_model_version)


# (case, model, promote arguments, check that must fail)
FAILING_CASES = [
    ("missing column", "no_price", {}, "schema"),
    ("worse AUC", "weak", {"min_drift_correlation": -1.0}, "quality"),
    ("impossible additivity tolerance", "large", {"additivity_tolerance": 0.0}, "additivity"),
    ("drift threshold above figure", "large", {"min_drift_correlation": 0.9999}, "drift"),
    ("latency budget 0", "large", {"latency_budget_ms": 0.0, "blocking": em.registry.CHECK_NAMES}, "latency"),
]


@pytest.mark.parametrize(("case", "model", "arguments", "failing"), FAILING_CASES, ids=[c[0] for c in FAILING_CASES])
def test_failing_check_keeps_alias(models, credit_split, holder, case, model, arguments, failing):
    train, validation = credit_split
    version = str(register(models[model], train, NAME).registered_model_version)

    report = em.promote(NAME, version, validation_data=validation, target=TARGET, **{**FAST, **arguments})
    tags = _client().get_model_version(NAME, version).tags

    assert report.status == "rejected"
    assert em.current_holder(_client(), NAME, "champion") == holder
    assert report.check(failing).status == "failed"
    assert failing in report.blocking_failures
    assert failing in tags["promotion.checks_failed"].split(",")
    assert tags["promotion.status"] == "rejected"
    assert _stored_report(report)["failed_checks"] == report.failed_checks


def test_failing_check_figures(models, credit_split, holder):
    train, validation = credit_split
    version = str(register(models["large"], train, NAME).registered_model_version)

    report = em.promote(
        NAME, version, validation_data=validation, target=TARGET, dry_run=True,
        additivity_tolerance=0.0, min_drift_correlation=0.9999, latency_budget_ms=0.0, **FAST,
    )  # fmt: skip

    # Each failure is real: a positive additivity error, a correlation below 0.9999, a time above 0.
    assert 0.0 < report.check("additivity").figure < 1e-12
    assert 0.5 < report.check("drift").figure < 0.9999
    assert report.check("latency").figure > 0.0
    assert report.check("latency").blocking is False
    assert report.blocking_failures == ["additivity", "drift"]


def test_altered_model_fails_loads(models, credit_split, holder):
    train, validation = credit_split
    version = _altered_version(models, train)

    report = em.promote(NAME, version, validation_data=validation, target=TARGET, **FAST)

    assert report.status == "rejected"
    assert em.current_holder(_client(), NAME, "champion") == holder
    assert report.check("loads").status == "error"
    assert "ModelIntegrityError" in report.check("loads").message
    assert {check.status for check in report.checks[1:]} == {"skipped"}


def test_dry_run_moves_and_stores_nothing(models, credit_split, holder):
    train, validation = credit_split
    version = str(register(models["large"], train, NAME).registered_model_version)

    report = em.promote(NAME, version, validation_data=validation, target=TARGET, dry_run=True, **FAST)

    assert report.status == "dry_run"
    assert report.passed
    assert report.report_uri is None
    assert em.current_holder(_client(), NAME, "champion") == holder
    assert not any(key.startswith("promotion.") for key in _client().get_model_version(NAME, version).tags)


def test_interrupted_promotion_keeps_alias(models, credit_split, holder):
    train, validation = credit_split
    version = str(register(models["large"], train, NAME).registered_model_version)

    def stop_after_additivity(result: em.CheckResult) -> None:
        if result.name == "additivity":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        em.promote(NAME, version, validation_data=validation, target=TARGET, on_check=stop_after_additivity, **FAST)
    tags = _client().get_model_version(NAME, version).tags
    stored = json.loads(mlflow.artifacts.load_text(tags["promotion.report"]))

    assert em.current_holder(_client(), NAME, "champion") == holder
    assert tags["promotion.status"] == "interrupted"
    assert [check["name"] for check in stored["checks"]] == ["loads", "schema", "quality", "additivity"]


def test_race_leaves_one_holder(models, credit_split, holder):
    train, validation = credit_split
    versions = [str(register(models["large"], train, NAME).registered_model_version) for _ in range(2)]

    reports = race(NAME, versions, validation)
    final = em.current_holder(_client(), NAME, "champion")
    by_status = {report.status: report for report in reports}

    assert sorted(by_status) == ["conflict", "promoted"]
    assert final == by_status["promoted"].version
    assert by_status["conflict"].holder_at_start == holder
    assert by_status["conflict"].holder_at_move == final
    assert by_status["promoted"].holder_at_move == holder
    assert _stored_report(by_status["conflict"])["holder_at_move"] == final
    assert _client().search_registered_models(f"name = '{lock_name(NAME, 'champion')}'") == []


def test_lock_excludes_under_contention():
    # A create that loses the race fails with RESOURCE_DOES_NOT_EXIST when the holder deletes
    # the lock at that moment. The lock must then try again instead of raising.
    client = _client()
    client.create_registered_model(NAME)

    max_inside = contend_for_lock(client, NAME)

    assert max_inside == 1
    assert client.search_registered_models(f"name = '{lock_name(NAME, 'champion')}'") == []


def test_cli_promote_exit_status(models, credit_split, holder, tmp_path, capsys):
    train, validation = credit_split
    validation.to_csv(tmp_path / "validation.csv", index=False)
    weak = str(register(models["weak"], train, NAME).registered_model_version)
    arguments = ["--validation-data", str(tmp_path / "validation.csv"), "--target", TARGET, "--latency-calls", "3"]

    rejected = main(["promote", NAME, weak, *arguments, "-q"])
    dry_run = main(["promote", NAME, holder, *arguments, "--dry-run", "--json"])
    printed = json.loads(capsys.readouterr().out)

    assert rejected == 3
    assert dry_run == 0
    assert printed["status"] == "dry_run"
    assert printed["passed"] is True
    assert em.current_holder(_client(), NAME, "champion") == holder


def test_promote_rejects_bad_arguments(credit_split, holder):
    validation = credit_split[1]

    with pytest.raises(em.PromotionError, match="no version '9'"):
        em.promote(NAME, 9, validation_data=validation, target=TARGET)
    with pytest.raises(em.PromotionError, match="target column 'status'"):
        em.promote(NAME, holder, validation_data=validation, target="status")
    with pytest.raises(em.InvalidParameterError, match="alias 'latest' is invalid"):
        em.promote(NAME, holder, "latest", validation_data=validation, target=TARGET)
    with pytest.raises(em.InvalidParameterError, match="unknown checks"):
        em.promote(NAME, holder, validation_data=validation, target=TARGET, blocking=["speed"])


def test_column_problems_rule():
    holder = Schema([ColSpec("long", "a"), ColSpec("string", "b"), ColSpec("double", "c", required=False)])
    cases = {
        "same": (Schema([ColSpec("long", "a"), ColSpec("string", "b")]), []),
        "any accepts": (Schema([ColSpec(AnyType(), "a"), ColSpec("string", "b")]), []),
        "long to double": (
            Schema([ColSpec("double", "a"), ColSpec("string", "b")]),
            ["column 'a' changes type from long to double"],
        ),
        "missing": (Schema([ColSpec("long", "a")]), ["column 'b' (string) is missing"]),
        "new required": (
            Schema([ColSpec("long", "a"), ColSpec("string", "b"), ColSpec("long", "d")]),
            ["column 'd' (long) is new and required"],
        ),
    }
    for case, (candidate, expected) in cases.items():
        assert column_problems(candidate, holder) == expected, case
    assert column_problems(Schema([ColSpec("long", "a")]), Schema([ColSpec("integer", "a")])) == []
    assert column_problems(ModelSignature(inputs=holder).inputs, None) == []


def test_quality_metric_other_tasks():
    from sklearn.datasets import load_diabetes, load_wine
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import Ridge
    from sklearn.metrics import roc_auc_score

    diabetes = load_diabetes(as_frame=True).frame
    wine = load_wine(as_frame=True).frame
    regressor = Ridge().fit(diabetes.drop(columns="target"), diabetes["target"])
    classifier = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=0)
    classifier.fit(wine.drop(columns="target"), wine["target"])
    cases = [("diabetes", regressor, diabetes, "rmse"), ("wine", classifier, wine, "auc")]

    for name, estimator, frame, metric in cases:
        features = frame.drop(columns="target")
        with mlflow.start_run():
            em.log_model(estimator, name="model", background_data=features, registered_model_name=name)
        report = em.promote(name, 1, validation_data=frame, target="target", dry_run=True, **FAST)
        quality = report.check("quality")
        if metric == "rmse":
            expected = float(((estimator.predict(features) - frame["target"]) ** 2).mean() ** 0.5)
        else:
            expected = roc_auc_score(frame["target"], estimator.predict_proba(features), multi_class="ovr")

        assert quality.unit == metric, name
        assert quality.figure == pytest.approx(expected, rel=1e-9), name
        assert report.check("additivity").status == "passed", name
