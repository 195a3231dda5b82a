"""Credit scoring with reasons: train, log, register, serve and query an explainable model.

Run from the repository root with ``make demo``, or ``python examples/credit_scoring.py`` in an
environment where the package is installed (the virtual environment's ``bin`` must be on
PATH, because ``mlflow models serve`` starts uvicorn through a shell).

The model is logged to MLflow's default tracking store (``sqlite:///mlflow.db`` in the working
directory, unless MLFLOW_TRACKING_URI says otherwise) and registered as ``credit``. The script
then serves that registered version with ``mlflow models serve`` on 127.0.0.1 and prints, for
five applicants, the decision, the probability of "bad" and the three features that pushed
the score most toward "bad", as returned over REST. The run also gets the explanation report
for class "bad" under its ``explanations/`` artifacts (``explanations/report.html``). The
held-out rows, with their ``Status``, are written to ``credit_holdout.csv`` in the working
directory for ``explainable-model promote``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder

import explainable_model as em

DATA = Path(__file__).resolve().parent / "data" / "credit_data.csv"
MODEL_NAME = "credit"
N_APPLICANTS = 5
# Written to the working directory, next to the default tracking store mlflow.db.
HOLDOUT = "credit_holdout.csv"
SERVER_START_TIMEOUT_S = 180


def build_pipeline(features: pd.DataFrame, estimator: Any = None) -> Pipeline:
    """Impute and one-hot encode text columns, impute numbers, then ``estimator`` (gradient boosting by default)."""
    # pandas 3 reads text as the "str" dtype, so text columns are found by "not numeric".
    categorical = [name for name in features.columns if not ptypes.is_numeric_dtype(features[name])]
    numeric = [name for name in features.columns if name not in categorical]
    preprocessing = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), numeric),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                categorical,
            ),
        ]
    )
    model = GradientBoostingClassifier(random_state=0) if estimator is None else estimator
    return Pipeline([("pre", preprocessing), ("model", model)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_uri: str, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def wait_until_ready(server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow models serve exited early:\n{server.stderr.read().decode()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    raise TimeoutError(f"The server did not answer /ping within {SERVER_START_TIMEOUT_S} s.")


def query(port: int, rows: pd.DataFrame, params: dict) -> pd.DataFrame:
    split = json.loads(rows.to_json(orient="split", index=False))
    body = json.dumps({"dataframe_split": split, "params": params}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return pd.DataFrame(json.loads(response.read())["predictions"])


def print_reasons(applicants: pd.DataFrame, scored: pd.DataFrame) -> None:
    for i in range(len(applicants)):
        row = scored.iloc[i]
        print(f"\nApplicant {i + 1}: decision {row['prediction']!r}, probability of 'bad' {row['probability@bad']:.3f}")
        for rank in (1, 2, 3):
            feature = row[f"reason_feature_{rank}"]
            value = row[f"reason_value_{rank}"]
            value = "missing" if pd.isna(value) else value
            print(f"  {rank}. {feature} = {value}  (+{row[f'reason_attribution_{rank}']:.3f} log-odds toward 'bad')")


def main() -> None:
    data = pd.read_csv(DATA)
    features, target = data.drop(columns="Status"), data["Status"]
    X_train, X_test, y_train, y_test = train_test_split(
        features, target, test_size=0.2, random_state=0, stratify=target
    )

    pipeline = build_pipeline(X_train).fit(X_train, y_train)
    auc = roc_auc_score(y_test == "bad", pipeline.predict_proba(X_test)[:, list(pipeline.classes_).index("bad")])
    print(f"Trained on {len(X_train)} applications; test AUC for 'bad': {auc:.3f}")
    # The held-out rows, with the target, are what `explainable-model promote` validates on.
    X_test.assign(Status=y_test).to_csv(HOLDOUT, index=False)
    print(f"Held-out rows for promotion checks: {HOLDOUT}")

    mlflow.set_experiment("credit-scoring")
    with mlflow.start_run():
        mlflow.log_metric("test_auc", auc)
        info = em.log_model(
            pipeline,
            name="credit_model",
            background_data=X_train,
            registered_model_name=MODEL_NAME,
            log_report={"explained_class": "bad"},
        )
    model_uri = f"models:/{MODEL_NAME}/{info.registered_model_version}"
    config = em.load_model(model_uri).config
    print(
        f"Logged and registered {model_uri} (tracking store {mlflow.get_tracking_uri()}); "
        f"SHAP method {config['explainers']['shap']['method']}, units {config['attribution_units']}, "
        f"largest additivity error {config['additivity']['max_error']:.2g}"
    )
    print(
        f"Explanation report: run {info.run_id}, artifacts explanations/report.html "
        "(mlflow ui: the run's page > Artifacts)"
    )

    applicants = X_test.iloc[:N_APPLICANTS].reset_index(drop=True)
    params = {"explained_class": "bad", "top_k": 3}
    local = mlflow.pyfunc.load_model(model_uri).predict(applicants, params=params)

    port = free_port()
    server = start_server(model_uri, port)
    try:
        wait_until_ready(server, port)
        served = query(port, applicants, params)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    attribution_columns = [name for name in local.columns if em.parse_column(name).kind == "shap"]
    gap = np.max(np.abs(served[attribution_columns].to_numpy(float) - local[attribution_columns].to_numpy(float)))
    print(f"Served {model_uri} on 127.0.0.1:{port}; served attributions equal in-process ones to {gap:.1e}.")
    print_reasons(applicants, served)


if __name__ == "__main__":
    main()
