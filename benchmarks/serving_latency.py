"""Measure single-row request latency of served explainable models against plain MLflow models.

Two pairs of models are served with ``mlflow models serve --env-manager local`` on
127.0.0.1, each server on a free port:

* XGBoost: one XGBClassifier (200 trees, max_depth 6) logged with
  ``explainable_model.log_model`` and with ``mlflow.xgboost.log_model``;
* RandomForest: one RandomForestClassifier (100 trees, max_depth 8) logged with
  ``explainable_model.log_model`` and with ``mlflow.sklearn.log_model``.

Both models of a pair are the same fitted estimator, trained on the same numeric frame of 30
``make_classification`` features. The pair differs only in what the served model computes.
The plain model returns the predicted label, and the explainable one returns the label, class
probabilities and SHAP attributions. A bare estimator on a numeric frame needs no Pipeline, so
the XGBoost model can be logged with its own flavor. Both plain models get an input signature,
so both servers enforce a schema.

The two servers of a pair run at the same time and receive requests alternately, one at a
time: ``--warm-up`` requests each first, then ``--requests`` timed ones each. Each request is
``{"dataframe_split": ...}`` JSON with one row, sent with ``requests`` on a keep-alive
session. Alternating spreads any load from other processes over both servers alike. The
latency is the client's wall time from sending a request to receiving its whole response.

The script then loads the explainable XGBoost model in-process with
``mlflow.pyfunc.load_model``, times one-row ``predict`` and the scoring server's request
handler (``mlflow.pyfunc.scoring_server.invocations``) for both XGBoost models, and profiles
the explainable model's one-row ``predict`` with cProfile, to show where its time goes.

Run from the repository root::

    .venv/bin/python benchmarks/serving_latency.py

It prints the tables and writes them, with the command, machine and package versions, under
the "Served latency" heading of ``docs/benchmarks.md`` (``--output`` changes the path,
``--no-write`` skips it). Other sections of that file are kept. Models are logged to a SQLite
tracking store in a temporary directory, which is deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import requests
import xgboost
from mlflow.models import infer_signature
from mlflow.pyfunc import scoring_server
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import OtherLoad, code_version, load_average, machine_line, write_section  # noqa: E402

import explainable_model  # noqa: E402

PACKAGES = ["numpy", "pandas", "scikit-learn", "shap", "xgboost", "mlflow", "requests"]
SECTION = "## Served latency"
HOST = "127.0.0.1"
N_FEATURES = 30
TRAIN_ROWS = 20_000
READY_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
XGBOOST_TARGET = 1.2
VENV_BIN = Path(sys.executable).parent
# Functions of the profile kept in the report: by cumulative time, and by own time.
PROFILE_LINES = 25
PROFILE_OWN_LINES = 15


@dataclass
class Pair:
    """One fitted estimator logged twice: as an explainable model and with its own MLflow flavor."""

    name: str
    description: str
    plain_flavor: str
    explained_uri: str
    plain_uri: str


@dataclass
class Latency:
    """Request latencies in milliseconds of one server."""

    samples: np.ndarray

    @property
    def p50(self) -> float:
        return float(np.percentile(self.samples, 50))

    @property
    def p99(self) -> float:
        return float(np.percentile(self.samples, 99))

    @property
    def mean(self) -> float:
        return float(self.samples.mean())


def build_data() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Return the training frame and labels, and held-out rows to send, from one draw."""
    x, y = make_classification(n_samples=TRAIN_ROWS + 2000, n_features=N_FEATURES, n_informative=10, random_state=0)
    columns = [f"x{i}" for i in range(N_FEATURES)]
    frame = pd.DataFrame(x, columns=columns)
    return frame.iloc[:TRAIN_ROWS], y[:TRAIN_ROWS], frame.iloc[TRAIN_ROWS:].reset_index(drop=True)


def log_pairs(train: pd.DataFrame, target: np.ndarray) -> list[Pair]:
    """Fit both estimators and log each one twice to the active tracking store."""
    xgb = xgboost.XGBClassifier(n_estimators=200, max_depth=6, random_state=0).fit(train, target)
    # n_jobs stays unset: a thread pool per one-row predict would add more than it saves.
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(train, target)
    # mlflow.sklearn saves with skops, which rejects scikit-learn's Tree unless it is listed as
    # trusted. This script wrote the file itself, and explainable_model trusts library classes too.
    plain_options = {"skops_trusted_types": ["sklearn.tree._tree.Tree"]}
    pairs = []
    with mlflow.start_run():
        for name, description, estimator, flavor, options in (
            ("XGBoost", "XGBClassifier, 200 trees, max_depth 6", xgb, mlflow.xgboost, {}),
            ("RandomForest", "RandomForestClassifier, 100 trees, max_depth 8", forest, mlflow.sklearn, plain_options),
        ):
            explained = explainable_model.log_model(estimator, name=f"{name}_explained", background_data=train)
            signature = infer_signature(train.head(), estimator.predict(train.head()))
            plain = flavor.log_model(estimator, name=f"{name}_plain", signature=signature, **options)
            pairs.append(Pair(name, description, flavor.__name__, explained.model_uri, plain.model_uri))
    return pairs


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(store_uri: str) -> dict[str, str]:
    """Return the servers' environment: the venv's bin first on PATH and the temporary store."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # mlflow starts uvicorn through a shell, which finds it on PATH.
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = store_uri
    env["MLFLOW_REGISTRY_URI"] = store_uri
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


def _stop(process: subprocess.Popen) -> None:
    # The server runs in its own session, so signalling its process group also stops the
    # shell and uvicorn that mlflow starts.
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def serve(model_uri: str, env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """Serve ``model_uri`` on 127.0.0.1 and a free port, yield its URL, and stop it at the end.

    Raises
    ------
    RuntimeError
        If the server exits or does not respond to /ping within ``READY_TIMEOUT_S``. The
        message ends with the server's stderr.
    """
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / "server.err"
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    with open(log_dir / "server.out", "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [*command, "-h", HOST, "-p", str(port)], env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"The server for {model_uri} exited: {stderr_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"The server for {model_uri} did not respond to /ping within {READY_TIMEOUT_S:.0f} s: "
                    f"{stderr_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)


def one_row_bodies(rows: pd.DataFrame) -> list[str]:
    """Return one ``dataframe_split`` JSON body per row, with every float digit kept."""
    columns = [str(name) for name in rows.columns]
    return [
        json.dumps({"dataframe_split": {"columns": columns, "data": [[float(value) for value in row]]}})
        for row in rows.itertuples(index=False)
    ]


def run_requests(
    urls: dict[str, str], bodies: list[str], warm_up: int, count: int, time_limit: float
) -> tuple[dict[str, Latency], dict[str, list[Any]]]:
    """Send ``warm_up`` then ``count`` timed one-row requests to each server, alternating.

    Returns
    -------
    latencies : dict
        The timed requests' latencies per server, in milliseconds.
    labels : dict
        The predicted label of each timed request per server, to check that both agree.

    Raises
    ------
    RuntimeError
        If a response is not HTTP 200, or the requests take longer than ``time_limit`` seconds.
    """
    sessions = {name: requests.Session() for name in urls}
    samples: dict[str, list[float]] = {name: [] for name in urls}
    labels: dict[str, list[Any]] = {name: [] for name in urls}
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + time_limit
    try:
        for i in range(warm_up + count):
            body = bodies[i % len(bodies)]
            for name, url in urls.items():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Requests timed out: {time_limit:.0f} s passed after {i} rounds.")
                start = time.perf_counter()
                response = sessions[name].post(
                    f"{url}/invocations", data=body, headers=headers, timeout=REQUEST_TIMEOUT_S
                )
                elapsed = time.perf_counter() - start
                if response.status_code != 200:
                    raise RuntimeError(f"{name} responded with HTTP {response.status_code}: {response.text[-3000:]}")
                if i >= warm_up:
                    samples[name].append(elapsed * 1000)
                    prediction = response.json()["predictions"][0]
                    labels[name].append(prediction["prediction"] if isinstance(prediction, dict) else prediction)
    finally:
        for session in sessions.values():
            session.close()
    return {name: Latency(np.asarray(values)) for name, values in samples.items()}, labels


def time_alternating(calls: dict[str, Callable[[], Any]], count: int) -> dict[str, Latency]:
    """Time ``count`` rounds of the calls, one of each per round, after 20 untimed rounds.

    Alternating the calls spreads any load from other processes over all of them alike.
    Returns the latencies in milliseconds per call name.
    """
    for _ in range(20):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: Latency(np.asarray(values)) for name, values in samples.items()}


def in_process(pair: Pair, row: pd.DataFrame, body: str, count: int) -> tuple[dict[str, Latency], str]:
    """Time one-row predict and the server's request handler in-process, and profile predict.

    Returns
    -------
    latencies : dict
        Keyed by "<model> predict" and "<model> request handler", where model is
        "explainable" or "plain".
    profile : str
        The explainable model's predict under cProfile: the functions with the largest
        cumulative time, then those with the largest own time.
    """
    models = {
        "explainable": mlflow.pyfunc.load_model(pair.explained_uri),
        "plain": mlflow.pyfunc.load_model(pair.plain_uri),
    }
    calls: dict[str, Callable[[], Any]] = {}
    for name, model in models.items():
        schema = model.metadata.get_input_schema()
        calls[f"{name} predict"] = lambda model=model: model.predict(row)
        calls[f"{name} request handler"] = lambda model=model, schema=schema: scoring_server.invocations(
            body, "application/json", model, schema
        )
    latencies = time_alternating(calls, count)

    profiler = cProfile.Profile()
    explainable = models["explainable"]
    profiler.enable()
    for _ in range(count):
        explainable.predict(row)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(PROFILE_LINES)
    stats.sort_stats("tottime").print_stats(PROFILE_OWN_LINES)
    return latencies, text.getvalue()










def profile_tables(profile: str) -> list[str]:
    """Return the function tables of pstats output, each without the header lines above it.

    File names are shortened to their path inside site-packages or inside the repository.
    """
    prefixes = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(ROOT)}, key=len)
    tables: list[list[str]] = []
    in_table = False
    for line in profile.splitlines():
        for prefix in reversed(prefixes):
            line = line.replace(prefix + os.sep, "")
        if line.lstrip().startswith("ncalls"):
            tables.append([line.rstrip()])
            in_table = True
        elif not line.strip():
            # pstats ends each table with a blank line, and the next header follows it.
            in_table = False
        elif in_table:
            tables[-1].append(line.rstrip())
    return ["\n".join(table) for table in tables]


def render(
    results: list[tuple[Pair, dict[str, Latency], float]],
    local: dict[str, Latency],
    local_other_cores: float,
    profile: str,
    args: argparse.Namespace,
    run_seconds: float,
    loads: tuple[str, str],
) -> str:
    """Return the Markdown section: description, tables, target, profile, command and machine."""
    cumulative_table, own_table = profile_tables(profile)
    lines = [
        SECTION,
        "",
        "Latency of one-row requests to `mlflow models serve --env-manager local` (one uvicorn worker) "
        "on 127.0.0.1, measured by the client from sending a request to receiving the whole response. "
        "Each pair is one fitted estimator on a numeric frame of 30 `make_classification` features "
        f"({TRAIN_ROWS:,} training rows), logged with `explainable_model.log_model` (explained: label, class "
        "probabilities and SHAP attributions) and with its own MLflow flavor (plain: the label). Both servers "
        f"of a pair ran at the same time and were sent `dataframe_split` JSON requests alternately, one at a "
        f"time on a keep-alive `requests` session: {args.warm_up} untimed requests each, then "
        f"{args.requests:,} timed ones each, cycling through {args.distinct_rows} held-out rows.",
        "",
        "| model | plain flavor | explained p50 ms | explained p99 ms | explained mean ms | plain p50 ms | "
        "plain p99 ms | plain mean ms | explained / plain p50 | other processes, cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pair, latencies, other_cores in results:
        explained, plain = latencies["explained"], latencies["plain"]
        lines.append(
            f"| {pair.description} | `{pair.plain_flavor}` | {explained.p50:.2f} | {explained.p99:.2f} | "
            f"{explained.mean:.2f} | {plain.p50:.2f} | {plain.p99:.2f} | {plain.mean:.2f} | "
            f"{explained.p50 / plain.p50:.2f}x | {other_cores:.2f} |"
        )
    xgb_ratio = next(lat["explained"].p50 / lat["plain"].p50 for pair, lat, _ in results if pair.name == "XGBoost")
    verdict = "met" if xgb_ratio <= XGBOOST_TARGET else "not met"
    lines += [
        "",
        'The machine is shared. "other processes, cores" is the mean number of cores that processes '
        "outside the benchmark and its servers kept busy while the pair's requests ran, from /proc.",
        "",
        f"Target: explained / plain p50 at most {XGBOOST_TARGET}x for XGBoost: {verdict} ({xgb_ratio:.2f}x).",
        "",
        "### Where the explainable XGBoost model's time goes",
        "",
        f"In-process p50 over {args.profile_calls} calls after 20 untimed ones, on one row: `predict` of "
        "the model loaded with `mlflow.pyfunc.load_model`, and the scoring server's request handler "
        "(`mlflow.pyfunc.scoring_server.invocations`: JSON parsing, `predict` and JSON output), which is "
        "the served request without HTTP. The four calls were timed alternately, one of each per round; "
        f"other processes kept {local_other_cores:.2f} cores busy meanwhile.",
        "",
        "| call | explained p50 ms | plain p50 ms | explained / plain |",
        "|---|---:|---:|---:|",
    ]
    for call in ("predict", "request handler"):
        explained, plain = local[f"explainable {call}"], local[f"plain {call}"]
        lines.append(f"| {call} | {explained.p50:.2f} | {plain.p50:.2f} | {explained.p50 / plain.p50:.2f}x |")
    lines += [
        "",
        f"The explainable model's one-row `predict` under cProfile ({args.profile_calls} calls), "
        f"the {PROFILE_LINES} functions with the largest cumulative time:",
        "",
        "```text",
        cumulative_table,
        "```",
        "",
        f"The {PROFILE_OWN_LINES} functions with the largest own time (tottime):",
        "",
        "```text",
        own_table,
        "```",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'benchmarks/serving_latency.py', *sys.argv[1:]])}` "
        f"({run_seconds / 60:.1f} minutes).",
        "",
        machine_line(
            PACKAGES,
            f", shared with other work (1-minute load average {loads[0]} at the start, {loads[1]} at the end)",
        ),
        "",
        f"Code: {code_version()}.",
        "",
    ]
    return "\n".join(lines)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per server (default 1000)")
    parser.add_argument("--warm-up", type=int, default=50, help="untimed requests per server first (default 50)")
    parser.add_argument("--distinct-rows", type=int, default=200, help="held-out rows the requests cycle through")
    parser.add_argument(
        "--time-limit", type=float, default=240.0, help="max seconds of requests per pair of servers (default 240)"
    )
    parser.add_argument("--profile-calls", type=int, default=300, help="in-process calls timed and profiled")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="Markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print the tables without writing the file")
    args = parser.parse_args()

    started = time.perf_counter()
    start_load = load_average()
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    train, target, held_out = build_data()
    sent = held_out.iloc[: args.distinct_rows]
    bodies = one_row_bodies(sent)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        store_uri = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        mlflow.set_tracking_uri(store_uri)
        mlflow.set_registry_uri(store_uri)
        experiment_id = mlflow.create_experiment(
            "serving_latency", artifact_location=(Path(scratch) / "artifacts").as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment_id)
        pairs = log_pairs(train, target)
        print(f"Models logged ({time.perf_counter() - started:.0f} s)", flush=True)
        env = server_env(store_uri)
        for pair in pairs:
            with (
                serve(pair.explained_uri, env, Path(scratch) / f"{pair.name}_explained") as explained_url,
                serve(pair.plain_uri, env, Path(scratch) / f"{pair.name}_plain") as plain_url,
            ):
                print(f"{pair.name}: servers ready ({time.perf_counter() - started:.0f} s)", flush=True)
                load = OtherLoad()
                load.start()
                latencies, labels = run_requests(
                    {"explained": explained_url, "plain": plain_url},
                    bodies,
                    args.warm_up,
                    args.requests,
                    args.time_limit,
                )
                other_cores = load.cores()
            if labels["explained"] != labels["plain"]:
                raise RuntimeError(f"{pair.name}: the explained and plain servers predicted different labels.")
            for name, latency in latencies.items():
                print(f"  {pair.name} {name}: p50 {latency.p50:.2f} ms, p99 {latency.p99:.2f} ms", flush=True)
            print(f"  other processes used {other_cores:.2f} cores meanwhile", flush=True)
            results.append((pair, latencies, other_cores))
        xgb_pair = next(pair for pair in pairs if pair.name == "XGBoost")
        load = OtherLoad()
        load.start()
        local, profile = in_process(xgb_pair, sent.iloc[:1], bodies[0], args.profile_calls)
        local_other_cores = load.cores()
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)

    run_seconds = time.perf_counter() - started
    section = render(results, local, local_other_cores, profile, args, run_seconds, (start_load, load_average()))
    print(section)
    print(f"Run time: {run_seconds:.0f} s", flush=True)
    if not args.no_write:
        write_section(args.output, SECTION, section)


if __name__ == "__main__":
    main()
