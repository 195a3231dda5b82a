"""The model served by `mlflow models serve`: same values as in-process, 4xx on bad requests,
strict JSON, and serving without explainable_model installed.

Every server binds to 127.0.0.1 on a free port and is stopped with its process group when
its fixture ends. The tests of this module share servers, because starting one takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression

import explainable_model
from tests.conftest import EXAMPLE_DATA
from tests.helpers import credit_pipeline
from tests.serving_utils import (
    error_message,
    frame_mismatches,
    post_json,
    serve_model,
    split_payload,
    strict_json,
)

pytestmark = pytest.mark.serving

VENV_BIN = Path(sys.executable).parent
# Rows of the credit data sent in one request. The last ones have missing values.
COMPLETE_ROWS = 12
ROWS_WITH_MISSING = 8


@dataclass
class LoggedModel:
    """A registered model in a module-wide store, and the same model loaded in-process."""

    store_uri: str
    model_uri: str
    local: explainable_model.LoadedModel
    requirements: list[str]


def _log_registered(store_dir: Path, name: str, estimator: Any, background: pd.DataFrame) -> LoggedModel:
    # The autouse tracking_store fixture gives each test its own store. A server outlives a
    # test, so this module's models live in a store of their own.
    store_uri = f"sqlite:///{store_dir / 'mlflow.db'}"
    mlflow.set_tracking_uri(store_uri)
    mlflow.set_registry_uri(store_uri)
    try:
        experiment_id = mlflow.create_experiment(name, artifact_location=(store_dir / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment_id):
            info = explainable_model.log_model(
                estimator, name="model", background_data=background, registered_model_name=name
            )
        model_uri = f"models:/{name}/{info.registered_model_version}"
        local = explainable_model.load_model(model_uri)
        requirements_file = mlflow.pyfunc.get_model_dependencies(model_uri)
        lines = Path(requirements_file).read_text().splitlines()
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    requirements = [line.strip() for line in lines if line.strip()]
    return LoggedModel(store_uri, model_uri, local, requirements)


def _server_env(store_uri: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a server for the models in ``store_uri``.

    ``base`` defaults to this process's environment with the venv's bin first on PATH.
    """
    if base is None:
        base = dict(os.environ)
        # mlflow starts uvicorn through a shell, which finds it on PATH.
        base["PATH"] = f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"
    env = {key: value for key, value in base.items() if key != "PYTHONPATH"}
    # mlflow.set_tracking_uri and set_registry_uri also export these variables, so this
    # process's environment names the current test's store. Both must name the module's store.
    env["MLFLOW_TRACKING_URI"] = store_uri
    env["MLFLOW_REGISTRY_URI"] = store_uri
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


def _serve_command(python: Path, model_uri: str) -> list[str]:
    return [str(python), "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]


@pytest.fixture(scope="module")
def credit_rows() -> pd.DataFrame:
    frame = pd.read_csv(EXAMPLE_DATA).drop(columns="Status")
    complete = frame.dropna().iloc[:COMPLETE_ROWS]
    with_missing = frame[frame.isna().any(axis=1)].iloc[:ROWS_WITH_MISSING]
    return pd.concat([complete, with_missing]).reset_index(drop=True)


@pytest.fixture(scope="module")
def credit_model(tmp_path_factory) -> LoggedModel:
    frame = pd.read_csv(EXAMPLE_DATA)
    features, target = frame.drop(columns="Status"), frame["Status"]
    pipeline = credit_pipeline(features, target, GradientBoostingClassifier(random_state=0))
    return _log_registered(tmp_path_factory.mktemp("credit_store"), "credit", pipeline, features)


@pytest.fixture(scope="module")
def credit_server(credit_model, tmp_path_factory) -> Iterator[str]:
    env = _server_env(credit_model.store_uri)
    log_dir = tmp_path_factory.mktemp("credit_server")
    command = _serve_command(VENV_BIN / "python", credit_model.model_uri)
    with serve_model(command, env, log_dir, cwd=log_dir) as url:
        yield url


# Request parameters of the value checks, by test id.
PARAMS = {
    "defaults": None,
    "top3_bad": {"top_k": 3, "explained_class": "bad"},
    "shap_and_lime": {"explainers": "shap,lime", "num_samples": 500, "top_k": 2},
}


@pytest.fixture(scope="module")
def credit_responses(credit_server, credit_rows) -> dict[str, Any]:
    return {case: post_json(credit_server, split_payload(credit_rows, p)) for case, p in PARAMS.items()}


@pytest.mark.parametrize("case", PARAMS)
def test_served_request_succeeds(credit_responses, case):
    assert credit_responses[case].status_code == 200, credit_responses[case].text


@pytest.mark.parametrize("case", PARAMS)
def test_served_values_match_local_predict(credit_responses, credit_model, credit_rows, case):
    expected = credit_model.local.predict(credit_rows, params=PARAMS[case])
    assert frame_mismatches(credit_responses[case].json()["predictions"], expected) == []


@pytest.mark.parametrize("case", list(PARAMS))
def test_served_response_is_strict_json(credit_responses, case):
    assert "predictions" in strict_json(credit_responses[case].text)


def test_request_rows_have_missing_values(credit_rows):
    # The value checks above cover missing inputs only if their payload contains nulls.
    assert "null" in json.dumps(split_payload(credit_rows))


# The same LIME request, repeated in a row and from concurrent clients.
REPEATED_PARAMS = {"explainers": "shap,lime", "num_samples": 500}
SEQUENTIAL_REQUESTS = 20
CLIENT_THREADS = 4
REQUESTS_PER_THREAD = 5


@pytest.fixture(scope="module")
def repeated_bodies(credit_server, credit_rows) -> tuple[list[bytes], list[bytes]]:
    body = split_payload(credit_rows.iloc[:5], REPEATED_PARAMS)
    sequential = [post_json(credit_server, body).content for _ in range(SEQUENTIAL_REQUESTS)]
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        concurrent = list(
            pool.map(lambda _: post_json(credit_server, body).content, range(CLIENT_THREADS * REQUESTS_PER_THREAD))
        )
    return sequential, concurrent


def test_repeated_requests_get_identical_bytes(repeated_bodies):
    sequential, _ = repeated_bodies
    assert len(set(sequential)) == 1


def test_concurrent_requests_get_identical_bytes(repeated_bodies):
    sequential, concurrent = repeated_bodies
    assert set(concurrent) == {sequential[0]}


def test_repeated_response_has_lime_columns(repeated_bodies):
    first = strict_json(repeated_bodies[0][0].decode())["predictions"][0]
    assert "lime:Income" in first


def _with(frame: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    return frame.assign(**columns)


# Each case: its id, a function from good rows to (body, content type), the expected status,
# and text that the error message must contain.
BadRequest = tuple[str, Callable[[pd.DataFrame], tuple[Any, str]], int, str]
BAD_REQUESTS: list[BadRequest] = [
    (
        "missing_column",
        lambda rows: (split_payload(rows.drop(columns="Income")), "application/json"),
        400,
        "missing inputs ['Income']",
    ),
    (
        "unexpected_column",
        lambda rows: (split_payload(_with(rows, Extra=1)), "application/json"),
        400,
        "unexpected columns: 'Extra'",
    ),
    (
        "text_in_float_column",
        lambda rows: (split_payload(_with(rows, Income="abc")), "application/json"),
        400,
        "Failed to convert column Income",
    ),
    (
        "text_in_integer_column",
        lambda rows: (split_payload(_with(rows, Age="abc")), "application/json"),
        400,
        "Column 'Age' expects numbers",
    ),
    ("malformed_json", lambda rows: ('{"dataframe_split": ', "application/json"), 400, "valid JSON"),
    (
        "wrong_content_type",
        lambda rows: (json.dumps(split_payload(rows)), "text/plain"),
        415,
        "only supports the following content types",
    ),
    (
        "top_k_negative",
        lambda rows: (split_payload(rows, {"top_k": -1}), "application/json"),
        400,
        "Parameter 'top_k' must be between 0 and 13; the request's value is below 0",
    ),
    (
        "top_k_too_large",
        lambda rows: (split_payload(rows, {"top_k": 999}), "application/json"),
        400,
        "Parameter 'top_k' must be between 0 and 13; the request's value is above 13",
    ),
    (
        "explained_class_not_a_class",
        lambda rows: (split_payload(rows, {"explained_class": "average"}), "application/json"),
        400,
        "the request's value is not one of them",
    ),
    (
        "unknown_explainer",
        lambda rows: (split_payload(rows, {"explainers": "magic"}), "application/json"),
        400,
        "names an unknown explainer",
    ),
    (
        "num_samples_too_small",
        lambda rows: (split_payload(rows, {"explainers": "lime", "num_samples": 1}), "application/json"),
        400,
        "Parameter 'num_samples' must be between 2 and 20000; the request's value is below 2",
    ),
    (
        "num_samples_over_limit",
        lambda rows: (split_payload(rows, {"explainers": "lime", "num_samples": 1000000}), "application/json"),
        400,
        "Parameter 'num_samples' must be between 2 and 20000; the request's value is above 20000",
    ),
    (
        "num_features_zero",
        lambda rows: (split_payload(rows, {"explainers": "lime", "num_features": 0}), "application/json"),
        400,
        "Parameter 'num_features' must be between 1 and 13; the request's value is below 1",
    ),
    (
        "shap_orderings_over_limit",
        lambda rows: (split_payload(rows, {"shap_orderings": 101}), "application/json"),
        400,
        "Parameter 'shap_orderings' must be between 1 and 100; the request's value is above 100",
    ),
    (
        "top_k_without_explainer",
        lambda rows: (split_payload(rows, {"explainers": "none", "top_k": 3}), "application/json"),
        400,
        "reasons need an explainer",
    ),
    (
        "top_k_not_an_integer",
        lambda rows: (split_payload(rows, {"top_k": "three"}), "application/json"),
        400,
        "top_k",
    ),
]
BAD_CASES = {case: build for case, build, _, _ in BAD_REQUESTS}
# MLflow's schema enforcement drops columns that the signature does not declare, with only a
# log warning, before the model's own column check runs. So the request is scored.
_DROPPED_EXTRA_COLUMN = pytest.mark.xfail(
    raises=AssertionError,
    strict=True,
    reason="mlflow models serve drops undeclared columns before the model sees them; "
    "only explainable_model.load_model(...).predict rejects them",
)
# Cases whose status and message checks fail because of a known gap in plain MLflow serving.
KNOWN_BUGS = {"unexpected_column": _DROPPED_EXTRA_COLUMN}


@pytest.fixture(scope="module")
def bad_exchanges(credit_server, credit_rows) -> dict[str, tuple[Any, Any]]:
    """Map each case to the bad request's response and the response to a good request sent next."""
    rows = credit_rows.iloc[:3]
    exchanges = {}
    for case, build in BAD_CASES.items():
        body, content_type = build(rows)
        bad = post_json(credit_server, body, content_type)
        exchanges[case] = (bad, post_json(credit_server, split_payload(rows)))
    return exchanges


@pytest.mark.parametrize(
    "case, status",
    [pytest.param(case, status, id=case, marks=KNOWN_BUGS.get(case, ())) for case, _, status, _ in BAD_REQUESTS],
)
def test_bad_request_gets_its_status(bad_exchanges, case, status):
    assert bad_exchanges[case][0].status_code == status, bad_exchanges[case][0].text


@pytest.mark.parametrize(
    "case, fragment",
    [pytest.param(case, fragment, id=case, marks=KNOWN_BUGS.get(case, ())) for case, _, _, fragment in BAD_REQUESTS],
)
def test_bad_request_message_names_problem(bad_exchanges, case, fragment):
    assert fragment in error_message(bad_exchanges[case][0])


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_request_is_not_5xx(bad_exchanges, case):
    assert bad_exchanges[case][0].status_code < 500, bad_exchanges[case][0].text


@pytest.mark.parametrize("case", BAD_CASES)
def test_good_request_succeeds_after_bad_one(bad_exchanges, case):
    assert bad_exchanges[case][1].status_code == 200, bad_exchanges[case][1].text


# A feature value this large is finite, but a linear model's output overflows to infinity.
HUGE = 1e308


@pytest.fixture(scope="module")
def overflow_server(tmp_path_factory) -> Iterator[tuple[str, pd.DataFrame]]:
    features, target = load_diabetes(return_X_y=True, as_frame=True)
    regressor = LinearRegression().fit(features, target)
    model = _log_registered(tmp_path_factory.mktemp("overflow_store"), "diabetes", regressor, features)
    rows = features.iloc[:2].reset_index(drop=True)
    rows.loc[0, "bmi"] = HUGE
    env = _server_env(model.store_uri)
    log_dir = tmp_path_factory.mktemp("overflow_server")
    with serve_model(_serve_command(VENV_BIN / "python", model.model_uri), env, log_dir, cwd=log_dir) as url:
        yield url, rows


@pytest.fixture(scope="module")
def overflow_response(overflow_server) -> Any:
    url, rows = overflow_server
    return post_json(url, split_payload(rows))


def test_overflow_request_succeeds(overflow_response):
    assert overflow_response.status_code == 200, overflow_response.text


def test_overflow_response_is_strict_json(overflow_response):
    # Raises on NaN or Infinity, which json.loads accepts by default.
    assert "predictions" in strict_json(overflow_response.text)


def test_overflowed_prediction_is_null(overflow_response):
    assert strict_json(overflow_response.text)["predictions"][0]["prediction"] is None


def test_overflowed_attribution_is_null(overflow_response):
    assert strict_json(overflow_response.text)["predictions"][0]["shap:bmi"] is None


def test_overflowed_row_keeps_finite_attributions(overflow_response):
    assert isinstance(strict_json(overflow_response.text)["predictions"][0]["shap:age"], float)


def test_row_without_overflow_keeps_its_prediction(overflow_response):
    assert isinstance(strict_json(overflow_response.text)["predictions"][1]["prediction"], float)


# Runs in place of uvicorn's console script. It records which environment runs the server, so
# the test can tell that mlflow's shell found this environment's uvicorn on PATH, and where
# the server finds explainable_model when the model's code imports it.
UVICORN_WRAPPER = """#!{python}
import importlib.machinery
import json
import sys

seen = {{"prefix": sys.prefix, "explainable_model": None}}


def record():
    with open({marker!r}, "w") as marker:
        json.dump(seen, marker)


class RecordingFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "explainable_model":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        seen["explainable_model"] = spec.origin if spec else None
        record()
        return spec


record()
sys.meta_path.insert(0, RecordingFinder)

from uvicorn.main import main

sys.exit(main())
"""

# Prints the pinned requirements that the environment does not satisfy.
UNMET_REQUIREMENTS = """
import json, sys
from importlib import metadata

unmet = []
for line in json.loads(sys.argv[1]):
    name, _, version = line.partition("==")
    try:
        found = metadata.version(name)
    except metadata.PackageNotFoundError:
        found = None
    if found != version:
        unmet.append(f"{line} (found {found})")
print(json.dumps(unmet))
"""


def _bare_env_vars(env_dir: Path) -> dict[str, str]:
    # Nothing may lead the bare environment back to the development tree or its venv.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    kept = [entry for entry in env.get("PATH", "").split(os.pathsep) if entry and Path(entry) != VENV_BIN]
    env["PATH"] = os.pathsep.join([str(env_dir / "bin"), *kept])
    return env


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory) -> Path:
    """A venv that can import the development venv's packages but not its editable explainable_model.

    A .pth line only adds a folder to sys.path. The .pth files inside that folder, among them
    the hook of the editable install, are not run.
    """
    root = tmp_path_factory.mktemp("bare")
    env_dir = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env=_bare_env_vars(env_dir),
    ).stdout.strip()
    (Path(site_packages) / "development_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wrapper = env_dir / "bin" / "uvicorn"
    wrapper.write_text(UVICORN_WRAPPER.format(python=python, marker=str(root / "uvicorn.json")))
    wrapper.chmod(0o755)
    return env_dir


def _run_bare(env_dir: Path, *args: str) -> subprocess.CompletedProcess:
    # `python -c` puts the working directory on sys.path, so it must be outside the source tree.
    return subprocess.run(
        [str(env_dir / "bin" / "python"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=env_dir.parent,
        env=_bare_env_vars(env_dir),
    )


def test_bare_env_lacks_explainable_model(bare_env):
    assert _run_bare(bare_env, "-c", "import explainable_model").returncode != 0


def test_bare_env_meets_model_requirements(bare_env, credit_model):
    result = _run_bare(bare_env, "-c", UNMET_REQUIREMENTS, json.dumps(credit_model.requirements))
    assert json.loads(result.stdout or "null") == [], result.stderr


def test_credit_estimator_saved_with_skops(credit_model):
    # Serving with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false below relies on this.
    assert credit_model.local.config["estimator"]["serialization_format"] == "skops"


@pytest.fixture(scope="module")
def bare_served(bare_env, credit_model, credit_rows) -> Iterator[tuple[Any, dict[str, Any]]]:
    env = _server_env(credit_model.store_uri, _bare_env_vars(bare_env))
    # The estimator was saved with skops, so loading it must not need pickle.
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    log_dir = bare_env.parent / "server"
    command = _serve_command(bare_env / "bin" / "python", credit_model.model_uri)
    with serve_model(command, env, log_dir, cwd=bare_env.parent) as url:
        response = post_json(url, split_payload(credit_rows.iloc[[COMPLETE_ROWS]]))
    marker = bare_env.parent / "uvicorn.json"
    yield response, json.loads(marker.read_text()) if marker.exists() else {}


def test_bare_server_runs_own_uvicorn(bare_served, bare_env):
    assert bare_served[1].get("prefix") == str(bare_env)


def test_bare_server_imports_logged_code(bare_served):
    # The package must come from the model's code/ folder, logged with it as a code path.
    module_file = Path(bare_served[1].get("explainable_model") or "/")
    assert module_file.parts[-3:] == ("code", "explainable_model", "__init__.py")


def test_model_serves_without_explainable_model(bare_served, credit_model, credit_rows):
    response = bare_served[0]
    assert response.status_code == 200, response.text
    row = credit_rows.iloc[[COMPLETE_ROWS]]
    assert frame_mismatches(response.json()["predictions"], credit_model.local.predict(row)) == []


def test_undeclared_param_dropped_by_mlflow_serve(credit_server, credit_rows):
    # mlflow models serve drops parameters that the signature does not declare, with a
    # warning in its log, so the request is scored with the defaults.
    rows = credit_rows.iloc[:2]
    dropped = post_json(credit_server, split_payload(rows, {"topk": 3}))
    default = post_json(credit_server, split_payload(rows))

    assert dropped.status_code == 200
    assert dropped.content == default.content
