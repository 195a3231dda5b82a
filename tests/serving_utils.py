"""Helpers of tests/test_serving.py: start `mlflow models serve` on 127.0.0.1 and send it requests."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0
_POLL_INTERVAL_S = 0.5
_STOP_TIMEOUT_S = 20.0
_LOG_TAIL_CHARS = 4000


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-_LOG_TAIL_CHARS:]


def _stop(process: subprocess.Popen) -> None:
    # mlflow's CLI starts bash, which execs uvicorn. The server runs in its own session, so
    # signalling its process group stops all of them.
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=_STOP_TIMEOUT_S)


def _wait_until_ready(process: subprocess.Popen, url: str, stderr_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"The model server exited with code {process.returncode} before answering /ping. "
                f"Its stderr ends with:\n{_tail(stderr_path)}"
            )
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                return
        time.sleep(_POLL_INTERVAL_S)
    pytest.fail(
        f"The model server did not answer /ping within {READY_TIMEOUT_S:.0f} s. "
        f"Its stderr ends with:\n{_tail(stderr_path)}"
    )


@contextlib.contextmanager
def serve_model(
    command: Sequence[str], env: Mapping[str, str], log_dir: Path, cwd: Path | None = None
) -> Iterator[str]:
    """Run ``command`` (an `mlflow models serve` line without host and port) and yield its URL.

    The server binds to 127.0.0.1 on a free port, its output goes to files in ``log_dir``,
    and it is stopped, with its process group, when the block ends.
    """
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "server.out", log_dir / "server.err"
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [*command, "-h", HOST, "-p", str(port)],
            env=dict(env),
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    url = f"http://{HOST}:{port}"
    try:
        _wait_until_ready(process, url, stderr_path)
        yield url
    finally:
        _stop(process)


def _json_cell(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def split_payload(frame: pd.DataFrame, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a ``dataframe_split`` request body for ``frame``, with missing values as null.

    Like ``frame.to_json(orient="split")``, but floats keep every digit (``to_json`` rounds
    them to 10 decimal places), so the served model gets the same numbers as the local one.
    """
    payload: dict[str, Any] = {
        "dataframe_split": {
            "columns": [str(name) for name in frame.columns],
            "data": [[_json_cell(value) for value in row] for row in frame.itertuples(index=False)],
        }
    }
    if params is not None:
        payload["params"] = params
    return payload


def _reject_constant(name: str) -> Any:
    raise ValueError(f"The response contains {name}, which strict JSON does not allow.")


def strict_json(text: str) -> Any:
    """Parse ``text`` as strict JSON: NaN, Infinity and -Infinity raise ValueError."""
    return json.loads(text, parse_constant=_reject_constant)


def post_json(url: str, body: Any, content_type: str = "application/json") -> requests.Response:
    """POST ``body`` (a JSON-ready object, or text sent as it is) to the server's /invocations."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.post(
        f"{url}/invocations", data=data, headers={"Content-Type": content_type}, timeout=REQUEST_TIMEOUT_S
    )


def error_message(response: requests.Response) -> str:
    """Return the ``message`` of an MLflow error response, or the body when it is not JSON."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return body.get("message", response.text) if isinstance(body, dict) else response.text


def _same_cell(served: Any, expected: Any, tolerance: float) -> bool:
    # Missing matches missing, whether served as null or as a NaN token. Strict JSON is
    # checked by a test of its own.
    served, expected = _json_cell(served), _json_cell(expected)
    if served is None or expected is None:
        return served is None and expected is None
    if isinstance(expected, float) and not isinstance(served, str):
        return abs(float(served) - expected) <= tolerance
    return served == expected


def frame_mismatches(served: list[dict[str, Any]], expected: pd.DataFrame, tolerance: float = 1e-9) -> list[str]:
    """Describe every difference between served JSON records and a local predict frame.

    Returns an empty list when both have the same rows and columns, in the same order, and
    each value matches: numbers to ``tolerance``, text exactly, missing where the frame is
    missing. Parse the body with ``response.json()``, which reads NaN tokens as float NaN.
    """
    if len(served) != len(expected):
        return [f"{len(served)} served rows, {len(expected)} expected"]
    problems = []
    for i, (record, row) in enumerate(zip(served, expected.itertuples(index=False), strict=True)):
        if list(record) != list(expected.columns):
            problems.append(f"row {i}: columns {list(record)} instead of {list(expected.columns)}")
            continue
        for name, value in zip(expected.columns, row, strict=True):
            if not _same_cell(record[name], value, tolerance):
                problems.append(f"row {i}, {name!r}: served {record[name]!r}, expected {value!r}")
    return problems


def server_env(store_uri: str, python_bin: Path) -> dict[str, str]:
    """Return the environment of a model server whose models live in ``store_uri``.

    ``python_bin`` goes first on PATH, because `mlflow models serve` starts uvicorn through a
    shell. Both tracking and registry URIs name the store, because ``mlflow.set_tracking_uri``
    in the test process exports the current test's store in these variables.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PATH"] = f"{python_bin}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = store_uri
    env["MLFLOW_REGISTRY_URI"] = store_uri
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return env


def run_until_exit(command: Sequence[str], env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a server ``command`` that is expected to exit at start, binding 127.0.0.1 on a free port.

    A server that starts instead is stopped after READY_TIMEOUT_S, and the result then has the
    return code of the stop signal.
    """
    process = subprocess.Popen(
        [*command, "-h", HOST, "-p", str(free_port())],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=READY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop(process)
        stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
