"""Registry promotion against a real `mlflow server` process backed by PostgreSQL, both on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pwd
import tempfile
from pathlib import Path

import mlflow
import pytest

import explainable_model as em
from explainable_model.registry.lock import lock_name
from tests.postgres_utils import POSTGRES_USER, mlflow_server, postgres_bin, postgres_cluster
from tests.promotion_utils import TARGET, contend_for_lock, fit_models, race, register, split_credit

NAME = "credit"
FAST = {"latency_calls": 5, "explain_rows": 100}


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _unavailable(message: str) -> None:
    """Skip the test, or fail it under CI=true, where the set-up must have provided PostgreSQL."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_mlflow_server():
    """URL of an `mlflow server` whose backend store is a PostgreSQL cluster made for this session."""
    bin_dir = postgres_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        _unavailable("PostgreSQL (initdb, pg_ctl) is not installed; tests/postgres_setup.sh installs it.")
    if os.geteuid() == 0 and not _user_exists(POSTGRES_USER):
        _unavailable(f"PostgreSQL refuses to run as root, and there is no {POSTGRES_USER!r} user to run it as.")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("The PostgreSQL tests need psycopg2-binary, which the dev extra installs.")
    with tempfile.TemporaryDirectory(prefix="explainable-model-mlflow-") as root:
        with postgres_cluster(bin_dir) as backend_uri, mlflow_server(backend_uri, Path(root)) as url:
            yield url


@pytest.fixture
def server_store(postgres_mlflow_server):
    """Point MLflow at the server; the autouse fixture resets the URIs after the test."""
    mlflow.set_tracking_uri(postgres_mlflow_server)
    mlflow.set_registry_uri(postgres_mlflow_server)
    return postgres_mlflow_server


@pytest.fixture(scope="module")
def credit_split(credit_frame):
    return split_credit(credit_frame)


@pytest.fixture(scope="module")
def versions(postgres_mlflow_server, credit_split):
    """Versions 1 to 3 of NAME on the server: a small model and two copies of a large one.

    Logging a model to the server takes a few seconds, so the tests share these versions and
    each one moves an alias of its own.
    """
    train = credit_split[0]
    models = fit_models(train)
    mlflow.set_tracking_uri(postgres_mlflow_server)
    mlflow.set_registry_uri(postgres_mlflow_server)
    mlflow.set_experiment("promotion")
    return {
        key: str(register(models[model], train, NAME).registered_model_version)
        for key, model in (("small", "small"), ("large", "large"), ("large_2", "large"))
    }


def test_server_promotes_and_stores_report(server_store, versions, credit_split):
    validation = credit_split[1]
    client = mlflow.MlflowClient()

    first = em.promote(NAME, versions["small"], "champion", validation_data=validation, target=TARGET, **FAST)
    strict = {**FAST, "additivity_tolerance": 0.0}
    failing = em.promote(NAME, versions["large"], "champion", validation_data=validation, target=TARGET, **strict)
    stored = json.loads(mlflow.artifacts.load_text(failing.report_uri))

    assert first.status == "promoted"
    assert first.holder_at_start is None
    assert failing.status == "rejected"
    assert failing.holder_at_start == versions["small"]
    assert client.get_model_version_by_alias(NAME, "champion").version == versions["small"]
    assert stored["status"] == "rejected"
    assert stored["failed_checks"] == ["additivity"]
    assert client.get_model_version(NAME, versions["large"]).tags["promotion.status"] == "rejected"
    assert client.get_model_version(NAME, versions["small"]).tags["promotion.report"] == first.report_uri


def test_server_race_leaves_one_holder(server_store, versions, credit_split):
    mlflow.MlflowClient().set_registered_model_alias(NAME, "threads", versions["small"])
    candidates = [versions["large"], versions["large_2"]]

    reports = race(NAME, candidates, credit_split[1], alias="threads")
    final = em.current_holder(mlflow.MlflowClient(), NAME, "threads")
    by_status = {report.status: report for report in reports}

    assert sorted(by_status) == ["conflict", "promoted"]
    assert final == by_status["promoted"].version
    assert by_status["conflict"].holder_at_move == final
    assert by_status["promoted"].holder_at_move == versions["small"]


def test_server_lock_excludes_under_contention(server_store, versions):
    client = mlflow.MlflowClient()

    max_inside = contend_for_lock(client, NAME, rounds=15)

    assert max_inside == 1
    assert client.search_registered_models(f"name = '{lock_name(NAME, 'champion')}'") == []
