"""Start a throwaway PostgreSQL cluster and an `mlflow server` backed by it, both on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.serving_utils import HOST, _tail, free_port

SERVER_READY_TIMEOUT_S = 120.0
_COMMAND_TIMEOUT_S = 120
_POLL_INTERVAL_S = 0.5
# The server's workers finish open keep-alive connections after SIGTERM, which takes over 10 s;
# the test server keeps nothing worth waiting for.
_STOP_GRACE_S = 3.0
# PostgreSQL refuses to run as root, so under uid 0 its programs run as this user.
POSTGRES_USER = "postgres"


def postgres_bin() -> Path | None:
    """Return the folder of initdb and pg_ctl: $PG_BIN, PATH, or the newest /usr/lib/postgresql/N/bin."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda path: int(path.parts[-3]), reverse=True
    )
    return candidates[0].parent if candidates else None


def _as_cluster_owner(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", POSTGRES_USER, "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(
        _as_cluster_owner(command), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with code {result.returncode}:\n{result.stderr[-2000:]}")


@contextlib.contextmanager
def postgres_cluster(bin_dir: Path) -> Iterator[str]:
    """Create and start a cluster in a temporary folder; yield its SQLAlchemy URI; stop and remove it.

    The cluster listens on a free TCP port of 127.0.0.1 only, with its unix socket in the
    folder, and trusts local connections, because it contains only test data and lives as long as
    the test session.
    """
    root = Path(tempfile.mkdtemp(prefix="explainable-model-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(POSTGRES_USER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, socket_dir, port = root / "data", root, free_port()
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        options = f"-p {port} -k {socket_dir} -c listen_addresses={HOST} -c fsync=off"
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
              "-o", options, "start"])  # fmt: skip
        started = True
        _run([str(bin_dir / "createdb"), "-h", HOST, "-p", str(port), "-U", "postgres", "mlflow"])
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the dev extra installs psycopg2.
        yield f"postgresql+psycopg2://postgres@{HOST}:{port}/mlflow"
    finally:
        if started:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"])
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, root: Path) -> Iterator[str]:
    """Run `mlflow server` on 127.0.0.1 with artifacts under ``root``; yield its URL."""
    port = free_port()
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    command = [
        str(mlflow_cli), "server",
        "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", str(root / "artifacts"),
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = dict(os.environ, PATH=f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    # mlflow server 3.17 starts six huey job consumers (about 220 MiB each) by default, and
    # registry calls do not need them.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    stderr_path = root / "server.stderr"
    with open(root / "server.stdout", "wb") as stdout, open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited with code {process.returncode}:\n{_tail(stderr_path)}")
            with contextlib.suppress(requests.ConnectionError, requests.Timeout):
                if requests.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not answer /health in {SERVER_READY_TIMEOUT_S:.0f} s:\n"
                            f"{_tail(stderr_path)}")  # fmt: skip
            time.sleep(_POLL_INTERVAL_S)
        yield url
    finally:
        _stop_server(process)


def _stop_server(process: subprocess.Popen) -> None:
    # The server runs in its own session, so its process group contains all its workers.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
