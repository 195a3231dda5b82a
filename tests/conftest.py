"""Shared fixtures: a temporary MLflow tracking store and the credit data."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

EXAMPLE_DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "credit_data.csv"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """A SQLite tracking store with MLflow's tables created, to copy for each test."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def tracking_store(tmp_path, monkeypatch, empty_store):
    """Point MLflow at a fresh SQLite store and artifact folder inside the test's temp dir."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Creating MLflow's tables takes about a second, so each test gets a copy of an empty store.
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment_id = mlflow.create_experiment("tests", artifact_location=(tmp_path / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment_id)
    yield uri
    if mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="session")
def credit_frame() -> pd.DataFrame:
    """The credit data as pandas reads it: text columns have the ``str`` dtype."""
    return pd.read_csv(EXAMPLE_DATA)


@pytest.fixture(scope="session")
def credit_xy(credit_frame):
    features = credit_frame.drop(columns="Status")
    return features, credit_frame["Status"]
