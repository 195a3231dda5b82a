"""`explainable-model serve`: MLflow's routes and formats, a bad-input matrix, workers, integrity.

One server runs for the module: serving/serve_alias.sh serves a registered model through its
alias, with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false. Every server binds to 127.0.0.1 on a free port and is
stopped with its process group when its fixture ends.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import requests
from pandas.api import types as ptypes
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import explainable_model
from tests.conftest import EXAMPLE_DATA
from tests.serving_utils import (
    READY_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    error_message,
    frame_mismatches,
    post_json,
    run_until_exit,
    serve_model,
    server_env,
    split_payload,
)

pytestmark = pytest.mark.serving

VENV_BIN = Path(sys.executable).parent
# Serves models:/NAME@ALIAS; the module's server runs through it.
SERVE_ALIAS_SCRIPT = Path(__file__).resolve().parents[1] / "serving" / "serve_alias.sh"
MODEL_NAME = "credit_served"
ALIAS = "champion"
MAX_ROWS = 50
N_FEATURES = 13

# Distinctive values written into every request of the matrix. A message or log line that
# repeats the request's data would contain some of them.
BASE_VALUES = {"Income": 4821.75, "Assets": 31415.5, "Debt": 2718.25, "Amount": 1337, "Price": 1687}
TEXT_SENTINEL = "zq-applicant-7731"
# A client-chosen name of 3,000 characters: messages show its first 64 and its length.
LONG_NAME = "n" * 64 + "zq-tail-" * 367


@dataclass
class ServedModel:
    store_uri: str
    model_uri: str
    local_path: Path
    local: explainable_model.LoadedModel


def _pipeline(features: pd.DataFrame, target: pd.Series) -> Pipeline:
    # Without imputers, numeric columns reject missing values, so the signature types them
    # long and double and MLflow's CSV parser accepts the model.
    categorical = [c for c in features.columns if not ptypes.is_numeric_dtype(features[c])]
    numeric = [c for c in features.columns if c not in categorical]
    pre = ColumnTransformer(
        [("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)]
    )
    return Pipeline([("pre", pre), ("model", LogisticRegression(max_iter=1000))]).fit(features, target)


@pytest.fixture(scope="module")
def complete_rows() -> pd.DataFrame:
    return pd.read_csv(EXAMPLE_DATA).dropna().reset_index(drop=True)


@pytest.fixture(scope="module")
def estimator(complete_rows) -> Pipeline:
    return _pipeline(complete_rows.drop(columns="Status"), complete_rows["Status"])


@pytest.fixture(scope="module")
def served_model(tmp_path_factory, complete_rows, estimator) -> ServedModel:
    store_dir = tmp_path_factory.mktemp("serve_store")
    store_uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    mlflow.set_tracking_uri(store_uri)
    mlflow.set_registry_uri(store_uri)
    try:
        experiment_id = mlflow.create_experiment("serve", artifact_location=(store_dir / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment_id):
            info = explainable_model.log_model(
                estimator,
                name="model",
                background_data=complete_rows.drop(columns="Status"),
                registered_model_name=MODEL_NAME,
                max_rows=MAX_ROWS,
            )
        mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, ALIAS, info.registered_model_version)
        model_uri = f"models:/{MODEL_NAME}@{ALIAS}"
        local_path = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(store_dir / "copy")))
        local = explainable_model.load_model(str(local_path))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    return ServedModel(store_uri, model_uri, local_path, local)


def _serve_command(model_uri: str, *options: str) -> list[str]:
    return [str(VENV_BIN / "python"), "-m", "explainable_model", "serve", model_uri, *options]


@dataclass
class Server:
    url: str
    log: Path


@pytest.fixture(scope="module")
def server(served_model, tmp_path_factory) -> Iterator[Server]:
    env = server_env(served_model.store_uri, VENV_BIN)
    # The estimator is stored with skops, so the model serves without unpickling anything.
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    log_dir = tmp_path_factory.mktemp("serve_server")
    command = [str(SERVE_ALIAS_SCRIPT), MODEL_NAME, ALIAS]
    with serve_model(command, env, log_dir, cwd=log_dir) as url:
        yield Server(url, log_dir / "server.err")


@pytest.fixture(scope="module")
def good_rows(complete_rows) -> pd.DataFrame:
    rows = complete_rows.drop(columns="Status").iloc[:3].reset_index(drop=True)
    return rows.assign(**BASE_VALUES)


# Routes


def test_ping_returns_200(server):
    assert requests.get(f"{server.url}/ping", timeout=REQUEST_TIMEOUT_S).status_code == 200


def test_health_returns_200(server):
    assert requests.get(f"{server.url}/health", timeout=REQUEST_TIMEOUT_S).status_code == 200


def test_version_is_mlflow_version(server):
    assert requests.get(f"{server.url}/version", timeout=REQUEST_TIMEOUT_S).text == mlflow.__version__


def test_get_invocations_is_405_json(server):
    response = requests.get(f"{server.url}/invocations", timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 405
    assert "takes POST" in response.json()["message"]


def test_unknown_route_is_404_json(server):
    response = requests.get(f"{server.url}/predict", timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 404
    assert "/invocations" in response.json()["message"]
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_served_model_uses_skops(served_model):
    assert served_model.local.config["estimator"]["serialization_format"] == "skops"


# Input formats: every format of MLflow's scoring server gives the in-process result.

FORMATS: dict[str, Callable[[pd.DataFrame], tuple[str, str]]] = {
    "dataframe_split": lambda rows: (json.dumps(split_payload(rows)), "application/json"),
    "dataframe_records": lambda rows: (
        json.dumps({"dataframe_records": rows.to_dict(orient="records")}),
        "application/json",
    ),
    "instances": lambda rows: (json.dumps({"instances": rows.to_dict(orient="records")}), "application/json"),
    "inputs": lambda rows: (json.dumps({"inputs": rows.to_dict(orient="list")}), "application/json"),
    "csv": lambda rows: (rows.to_csv(index=False), "text/csv"),
    "csv_with_charset": lambda rows: (rows.to_csv(index=False), "text/csv; charset=utf-8"),
}


@pytest.mark.parametrize("input_format", FORMATS)
def test_input_format_matches_local_predict(server, served_model, good_rows, input_format):
    body, content_type = FORMATS[input_format](good_rows)
    response = post_json(server.url, body, content_type)
    assert response.status_code == 200, response.text
    expected = served_model.local.predict(good_rows)
    assert frame_mismatches(response.json()["predictions"], expected) == []


def test_declared_params_are_applied(server, served_model, good_rows):
    params = {"top_k": 2, "explained_class": "bad", "explainers": "shap,lime", "num_samples": 300}
    response = post_json(server.url, split_payload(good_rows, params))
    assert response.status_code == 200, response.text
    expected = served_model.local.predict(good_rows, params=params)
    assert frame_mismatches(response.json()["predictions"], expected) == []


def test_whole_float_in_integer_column_is_scored(server, served_model, good_rows):
    # 34.0 is a whole number, so it is scored as 34, as in-process predict scores it.
    body = json.loads(_split_text(good_rows))
    ages = body["dataframe_split"]["columns"].index("Age")
    for row in body["dataframe_split"]["data"]:
        row[ages] = float(row[ages])

    response = post_json(server.url, body)

    assert response.status_code == 200, response.text
    assert frame_mismatches(response.json()["predictions"], served_model.local.predict(good_rows)) == []


def test_rows_at_limit_are_scored(server, complete_rows):
    rows = complete_rows.drop(columns="Status").iloc[:MAX_ROWS]
    response = post_json(server.url, split_payload(rows))
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == MAX_ROWS


def test_undeclared_param_rejected_by_explainable_serve(server, good_rows):
    # Plain `mlflow models serve` drops it and scores the request (tests/test_serving.py).
    response = post_json(server.url, split_payload(good_rows, {"topk": 3}))
    assert response.status_code == 400
    assert "Unknown parameter 'topk'; this model declares explained_class, explainers" in error_message(response)


# The bad-input matrix. Each case: a function from the good rows to (body, content type), the
# expected status, text that the message must contain, and values of the request that neither
# the response nor the server log may contain, besides BASE_VALUES.


def _split_text(rows: pd.DataFrame, params: dict[str, Any] | None = None) -> str:
    return json.dumps(split_payload(rows, params))


def _cell_replaced(rows: pd.DataFrame, column: str, token: str) -> str:
    # JSON tokens that pandas cannot write, such as Infinity, replace the value in row 0.
    body = split_payload(rows)
    body["dataframe_split"]["data"][0][list(rows.columns).index(column)] = "__TOKEN__"
    return json.dumps(body).replace('"__TOKEN__"', token)


def _too_many_rows(rows: pd.DataFrame) -> str:
    return _split_text(pd.concat([rows] * (MAX_ROWS // len(rows) + 1), ignore_index=True))


def _records_with(rows: pd.DataFrame, field: str, row: int, column: str, value: Any) -> str:
    records = rows.to_dict(orient="records")
    records[row][column] = value
    return json.dumps({field: records})


def _duplicated_column(rows: pd.DataFrame) -> str:
    body = split_payload(rows)
    body["dataframe_split"]["columns"].append("Age")
    for row in body["dataframe_split"]["data"]:
        row.append(44)
    return json.dumps(body)


JSON = "application/json"


@dataclass(frozen=True)
class BadRequest:
    build: Callable[[pd.DataFrame], str | bytes]
    status: int
    fragment: str
    content_type: str = JSON
    secrets: tuple[str, ...] = ()


BAD_REQUESTS: dict[str, BadRequest] = {
    "missing_column": BadRequest(
        lambda rows: _split_text(rows.drop(columns="Income")), 400, "missing columns: 'Income'"
    ),
    "extra_column": BadRequest(
        lambda rows: _split_text(rows.assign(Extra=TEXT_SENTINEL)),
        400,
        "unexpected columns: 'Extra'",
        secrets=(TEXT_SENTINEL,),
    ),
    "long_unexpected_column": BadRequest(
        lambda rows: _split_text(rows.assign(**{LONG_NAME: 1})),
        400,
        f"unexpected columns: '{'n' * 64}... (3000 characters)'",
        secrets=(LONG_NAME[:80],),
    ),
    "renamed_column": BadRequest(
        lambda rows: _split_text(rows.rename(columns={"Income": "income"})),
        400,
        "missing columns: 'Income'; unexpected columns: 'income'",
    ),
    "duplicated_column": BadRequest(_duplicated_column, 400, "duplicated columns: 'Age'"),
    "text_in_float_column": BadRequest(
        lambda rows: _split_text(rows.assign(Income=TEXT_SENTINEL)),
        400,
        "Column 'Income' expects double values",
        secrets=(TEXT_SENTINEL,),
    ),
    "text_in_integer_column": BadRequest(
        lambda rows: _split_text(rows.assign(Age=TEXT_SENTINEL)),
        400,
        "Column 'Age' expects long values",
        secrets=(TEXT_SENTINEL,),
    ),
    "list_in_float_column": BadRequest(
        lambda rows: _split_text(rows.assign(Debt=[[90817, 90818]] * len(rows))),
        400,
        "Column 'Debt' expects double values",
        secrets=("90817",),
    ),
    "fraction_in_integer_column": BadRequest(
        lambda rows: _cell_replaced(rows, "Age", "33.75"),
        400,
        "Column 'Age' expects whole numbers (int64), but row 0 has a fraction",
        secrets=("33.75",),
    ),
    "fraction_in_integer_record": BadRequest(
        lambda rows: _records_with(rows, "dataframe_records", 1, "Seniority", 7.625),
        400,
        "Column 'Seniority' expects whole numbers (int64), but row 1 has a fraction",
        secrets=("7.625",),
    ),
    "object_in_text_column": BadRequest(
        lambda rows: _cell_replaced(rows, "Home", json.dumps({"owner": TEXT_SENTINEL})),
        400,
        "Column 'Home' expects text (str), but row 0 contains a JSON object",
        secrets=(TEXT_SENTINEL,),
    ),
    "list_in_text_input": BadRequest(
        lambda rows: _records_with(rows, "instances", 0, "Job", [TEXT_SENTINEL, "fixed"]),
        400,
        "Column 'Job' expects text (str), but row 0 contains a JSON list",
        secrets=(TEXT_SENTINEL,),
    ),
    "null_in_numeric_column": BadRequest(
        lambda rows: _split_text(rows.assign(Income=None)), 400, "Column 'Income' has a missing value"
    ),
    "nan_token": BadRequest(lambda rows: _cell_replaced(rows, "Income", "NaN"), 400, "Column 'Income' has a missing"),
    "infinity": BadRequest(
        lambda rows: _cell_replaced(rows, "Income", "Infinity"), 400, "Column 'Income' has an infinite value"
    ),
    "negative_infinity": BadRequest(
        lambda rows: _cell_replaced(rows, "Assets", "-Infinity"), 400, "Column 'Assets' has an infinite value"
    ),
    "empty_frame": BadRequest(lambda rows: _split_text(rows.iloc[:0]), 400, "Input has no rows"),
    "rows_over_limit": BadRequest(_too_many_rows, 400, f"more than this model's limit of {MAX_ROWS} rows"),
    "malformed_json": BadRequest(
        lambda rows: _split_text(rows)[:-40], 400, "The request body is not valid JSON: Expecting"
    ),
    "body_not_utf8": BadRequest(
        lambda rows: _split_text(rows).encode().replace(b"rent", b"r\xffnt"), 400, "not valid UTF-8"
    ),
    "empty_body": BadRequest(lambda rows: "", 400, "not valid JSON"),
    "json_list_body": BadRequest(
        lambda rows: json.dumps(rows.to_dict(orient="records")), 400, "must be a JSON object with exactly one of"
    ),
    "no_input_field": BadRequest(
        lambda rows: json.dumps({"data": rows.to_dict(orient="records")}),
        400,
        "exactly one of the fields dataframe_split, dataframe_records, instances, inputs",
    ),
    "two_input_fields": BadRequest(
        lambda rows: json.dumps({**split_payload(rows), "dataframe_records": rows.to_dict(orient="records")}),
        400,
        "exactly one of the fields",
    ),
    "split_without_data": BadRequest(
        lambda rows: json.dumps({"dataframe_split": {"columns": list(rows.columns)}}),
        400,
        "must be a JSON object with a 'data' field",
    ),
    "split_row_too_short": BadRequest(
        lambda rows: json.dumps(
            {"dataframe_split": {"columns": list(rows.columns), "data": [list(BASE_VALUES.values())]}}
        ),
        400,
        "every row of 'data' needs one value per entry of 'columns'",
    ),
    "records_not_a_list": BadRequest(
        lambda rows: json.dumps({"dataframe_records": rows.iloc[0].to_dict()}), 400, "must be a list of records"
    ),
    "wrong_content_type": BadRequest(_split_text, 415, "Unsupported content type", content_type="text/plain"),
    "wrong_charset": BadRequest(
        _split_text, 415, "Unsupported content type", content_type="application/json; charset=latin-1"
    ),
    "csv_text_in_numeric_column": BadRequest(
        lambda rows: rows.assign(Income=TEXT_SENTINEL).to_csv(index=False),
        400,
        "The CSV body could not be read",
        content_type="text/csv",
        secrets=(TEXT_SENTINEL,),
    ),
    "unknown_param": BadRequest(
        lambda rows: _split_text(rows, {"topk": 3}), 400, "Unknown parameter 'topk'; this model declares"
    ),
    "long_unknown_param": BadRequest(
        lambda rows: _split_text(rows, {LONG_NAME: 3}),
        400,
        f"Unknown parameter '{'n' * 64}... (3000 characters)'; this model declares",
        secrets=(LONG_NAME[:80],),
    ),
    "param_not_an_integer": BadRequest(
        lambda rows: _split_text(rows, {"top_k": TEXT_SENTINEL}),
        400,
        "Parameter 'top_k' must be an integer, got a string",
        secrets=(TEXT_SENTINEL,),
    ),
    "param_float_for_integer": BadRequest(
        lambda rows: _split_text(rows, {"top_k": 2.375}), 400, "must be an integer, got a float", secrets=("2.375",)
    ),
    "top_k_over_range": BadRequest(
        lambda rows: _split_text(rows, {"top_k": 9137}),
        400,
        "Parameter 'top_k' must be between 0 and 13; the request's value is above 13",
        secrets=("9137",),
    ),
    "top_k_negative": BadRequest(
        lambda rows: _split_text(rows, {"top_k": -9137}), 400, "the request's value is below 0", secrets=("9137",)
    ),
    "explained_class_unknown": BadRequest(
        lambda rows: _split_text(rows, {"explained_class": TEXT_SENTINEL}),
        400,
        "Parameter 'explained_class' must be one of 'auto', 'predicted', 'all', 'bad', 'good'",
        secrets=(TEXT_SENTINEL,),
    ),
    "explainer_unknown": BadRequest(
        lambda rows: _split_text(rows, {"explainers": TEXT_SENTINEL}),
        400,
        "Parameter 'explainers' names an unknown explainer",
        secrets=(TEXT_SENTINEL,),
    ),
    "num_samples_over_limit": BadRequest(
        lambda rows: _split_text(rows, {"explainers": "lime", "num_samples": 987654}),
        400,
        "Parameter 'num_samples' must be between 2 and 20000",
        secrets=("987654",),
    ),
    "params_not_an_object": BadRequest(
        lambda rows: json.dumps({**split_payload(rows), "params": [TEXT_SENTINEL]}),
        400,
        "Field 'params' must be a JSON object",
        secrets=(TEXT_SENTINEL,),
    ),
}


def _secrets(case: str) -> list[str]:
    return [str(value) for value in BASE_VALUES.values()] + list(BAD_REQUESTS[case].secrets)


def _contains_value(text: str, value: str) -> bool:
    # A number must not match inside a longer number: 1337 is not in 21337.
    return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w])", text) is not None


@pytest.fixture(scope="module")
def bad_exchanges(server, good_rows) -> dict[str, tuple[requests.Response, requests.Response]]:
    """Map each case to the bad request's response and the response to a good request sent next."""
    exchanges = {}
    for case, bad in BAD_REQUESTS.items():
        response = post_json(server.url, bad.build(good_rows), bad.content_type)
        exchanges[case] = (response, post_json(server.url, split_payload(good_rows)))
    return exchanges


def test_matrix_has_25_cases():
    assert len(BAD_REQUESTS) >= 25


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_gets_its_status(bad_exchanges, case):
    response = bad_exchanges[case][0]
    assert response.status_code == BAD_REQUESTS[case].status, response.text


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_message_names_problem(bad_exchanges, case):
    assert BAD_REQUESTS[case].fragment in error_message(bad_exchanges[case][0])


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_error_is_json(bad_exchanges, case):
    body = bad_exchanges[case][0].json()
    assert set(body) == {"error_code", "message"}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_response_holds_no_request_value(bad_exchanges, case):
    text = bad_exchanges[case][0].text
    assert [value for value in _secrets(case) if _contains_value(text, value)] == []


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_good_request_succeeds_after_bad_one(bad_exchanges, case):
    assert bad_exchanges[case][1].status_code == 200, bad_exchanges[case][1].text


def test_no_bad_request_gets_5xx(bad_exchanges):
    assert {case: r.status_code for case, (r, _) in bad_exchanges.items() if r.status_code >= 500} == {}


def test_server_log_holds_no_request_value(bad_exchanges, server):
    log = server.log.read_text(errors="replace")
    leaked = {case: value for case in BAD_REQUESTS for value in _secrets(case) if _contains_value(log, value)}
    assert leaked == {}


def test_server_log_has_each_rejection(bad_exchanges, server):
    log = server.log.read_text(errors="replace")
    assert log.count("POST /invocations returned 4") >= len(BAD_REQUESTS)


# Two workers


@pytest.fixture(scope="module")
def two_worker_server(served_model, tmp_path_factory) -> Iterator[Server]:
    env = server_env(served_model.store_uri, VENV_BIN)
    log_dir = tmp_path_factory.mktemp("serve_two_workers")
    command = _serve_command(str(served_model.local_path), "-w", "2")
    with serve_model(command, env, log_dir, cwd=log_dir) as url:
        # /ping responds as soon as one worker is up; the requests below need both.
        log = log_dir / "server.err"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while log.read_text().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        yield Server(url, log)


@pytest.fixture(scope="module")
def two_worker_bodies(two_worker_server, good_rows) -> list[tuple[int, bytes]]:
    body = split_payload(good_rows, {"explainers": "shap,lime", "num_samples": 300, "top_k": 2})

    def send(_: int) -> tuple[int, bytes]:
        response = post_json(two_worker_server.url, body)
        return response.status_code, response.content

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(send, range(12)))


def test_two_workers_start(two_worker_server):
    started = set(re.findall(r"Started server process \[(\d+)\]", two_worker_server.log.read_text()))
    assert len(started) == 2


def test_two_workers_answer_all_requests(two_worker_bodies):
    assert [status for status, _ in two_worker_bodies] == [200] * len(two_worker_bodies)


def test_two_workers_give_identical_bytes(two_worker_bodies):
    assert len({content for _, content in two_worker_bodies}) == 1


# Integrity and pickle policy on the served path: the server stops at start, naming the file.


def _model_copy(served_model: ServedModel, folder: Path) -> Path:
    copy = folder / "model"
    shutil.copytree(served_model.local_path, copy)
    return copy


def test_changed_file_stops_server(served_model, tmp_path):
    copy = _model_copy(served_model, tmp_path)
    background = copy / "artifacts" / "explainer_state" / "background.parquet"
    background.write_bytes(background.read_bytes() + b"\0")
    result = run_until_exit(_serve_command(str(copy)), server_env(served_model.store_uri, VENV_BIN), tmp_path)
    assert result.returncode == 1
    assert re.search(r"background\.parquet.*does not match its SHA-256", result.stderr), result.stderr[-2000:]


def test_missing_file_stops_server(served_model, tmp_path):
    copy = _model_copy(served_model, tmp_path)
    (copy / "artifacts" / "explainer_state" / "features.json").unlink()
    result = run_until_exit(_serve_command(str(copy)), server_env(served_model.store_uri, VENV_BIN), tmp_path)
    assert result.returncode == 1
    assert re.search(r"features\.json.*missing", result.stderr), result.stderr[-2000:]


def test_cloudpickle_model_stops_server_without_pickle(estimator, complete_rows, tmp_path):
    path = tmp_path / "pickled"
    explainable_model.save_model(
        estimator, path, background_data=complete_rows.drop(columns="Status"), serialization_format="cloudpickle"
    )
    env = server_env("sqlite:///" + str(tmp_path / "unused.db"), VENV_BIN)
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    result = run_until_exit(_serve_command(str(path)), env, tmp_path)
    assert result.returncode == 1
    assert "stored with cloudpickle" in result.stderr, result.stderr[-2000:]
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" in result.stderr


def test_max_rows_stored_with_model(served_model):
    assert served_model.local.config["explainers"]["defaults"]["max_rows"] == MAX_ROWS


def test_max_rows_zero_rejected_at_save(estimator, complete_rows, tmp_path):
    with pytest.raises(explainable_model.InvalidParameterError, match="max_rows must be a positive integer"):
        explainable_model.save_model(
            estimator, tmp_path / "model", background_data=complete_rows.drop(columns="Status"), max_rows=0
        )


# Request timeout: a request that runs past -t gets a 504 with a JSON message.
TIMEOUT_S = 1


@pytest.fixture(scope="module")
def timed_out(served_model, complete_rows, tmp_path_factory) -> Iterator[tuple[requests.Response, int]]:
    env = server_env(served_model.store_uri, VENV_BIN)
    log_dir = tmp_path_factory.mktemp("serve_timeout")
    command = _serve_command(str(served_model.local_path), "-t", str(TIMEOUT_S))
    # LIME with the largest sample count on the most rows takes several seconds on any machine.
    rows = complete_rows.drop(columns="Status").iloc[:MAX_ROWS]
    params = {"explainers": "lime", "num_samples": 20_000}
    with serve_model(command, env, log_dir, cwd=log_dir) as url:
        response = post_json(url, split_payload(rows, params))
        ping = requests.get(f"{url}/ping", timeout=REQUEST_TIMEOUT_S).status_code
        yield response, ping


def test_slow_request_gets_504(timed_out):
    assert timed_out[0].status_code == 504, timed_out[0].text[:500]


def test_504_message_names_timeout(timed_out):
    assert f"longer than the server's timeout of {TIMEOUT_S} s" in error_message(timed_out[0])


def test_server_responds_after_timeout(timed_out):
    assert timed_out[1] == 200
