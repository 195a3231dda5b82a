"""Load-test `explainable-model serve` and plain `mlflow models serve` of the same model.

The model is the demo's credit Pipeline (``examples/credit_scoring.py``: imputers, a
OneHotEncoder and a GradientBoostingClassifier, trained on ``examples/data/credit_data.csv``),
saved once with ``explainable_model.save_model``. Each server serves that folder with two
uvicorn workers on 127.0.0.1 and a free port, with ``EXPLAINABLE_MODEL_N_JOBS=1`` so that each
worker scores on one core. The servers run one after the other, never at the same time: each
gets ``--warm-up`` untimed requests, then ``serving/load_test.py``'s clients for ``--seconds``.
With ``--rounds 2`` (the default) the order is explainable, plain, plain, explainable, so that a
trend in the load from other processes affects both servers alike.

Run from the repository root (the script puts the virtual environment's ``bin`` on the
servers' PATH, which ``mlflow models serve`` needs)::

    .venv/bin/python benchmarks/serve_load.py

It prints the table and writes it, with the command, machine, load averages and package
versions, under the "Served load" heading of ``docs/benchmarks.md`` (``--no-write`` skips that).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "serving"))

from _common import code_version, machine_line, write_section  # noqa: E402
from load_test import Summary, build_bodies, run_load  # noqa: E402

import explainable_model  # noqa: E402

SECTION = "## Served load"
DATA = ROOT / "examples" / "data" / "credit_data.csv"
PACKAGES = ["mlflow", "uvicorn", "fastapi", "scikit-learn", "shap", "pandas", "numpy", "requests"]
START_TIMEOUT_S = 180.0
VENV_BIN = Path(sys.executable).parent


def _demo_pipeline_builder():
    spec = importlib.util.spec_from_file_location("credit_scoring", ROOT / "examples" / "credit_scoring.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_pipeline


def save_credit_model(path: Path) -> None:
    """Train the demo's credit Pipeline and save it with explainable_model."""
    frame = pd.read_csv(DATA)
    features, target = frame.drop(columns="Status"), frame["Status"]
    pipeline = _demo_pipeline_builder()(features).fit(features, target)
    explainable_model.save_model(pipeline, path, background_data=features)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(command: list[str], log_path: Path, workers: int) -> Iterator[str]:
    """Start ``command`` with host and port added, wait until every worker is up, yield its URL."""
    port = _free_port()
    env = dict(os.environ, EXPLAINABLE_MODEL_N_JOBS="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited early:\n{log_path.read_text()[-3000:]}")
            if log_path.read_text(errors="replace").count("Application startup complete") >= workers:
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{shlex.join(command)} did not start {workers} workers in {START_TIMEOUT_S:.0f} s.")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _load_averages() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def measure(name: str, command: list[str], log_path: Path, args: argparse.Namespace, bodies) -> dict:
    """Serve with ``command`` and run the load test against it; return the summary and load averages."""
    with running_server(command, log_path, args.workers) as url:
        for body in bodies * max(1, args.warm_up // len(bodies)):
            requests.post(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}, timeout=30)
        before = _load_averages()
        summary = run_load(url, bodies, args.clients, args.seconds, None, args.rows)
        after = _load_averages()
    print(
        f"{name}: {summary.requests} requests, {summary.errors} errors, {summary.mismatches} mismatches, "
        f"p50 {summary.p50_ms:.2f} ms, p99 {summary.p99_ms:.2f} ms, {summary.throughput_per_s:.1f}/s "
        f"(load averages {before} -> {after})"
    )
    return {"name": name, "summary": summary, "before": before, "after": after}


def render(results: list[dict], args: argparse.Namespace, minutes: float) -> str:
    """Return the Markdown section with the table, command and machine."""
    lines = [
        SECTION,
        "",
        f"{args.clients} concurrent clients for {args.seconds:.0f} s against each server, "
        f"`serving/load_test.py`: each client sends one request at a time on a keep-alive `requests` session, "
        f"`dataframe_split` JSON of {args.rows} row(s) with the model's default params (SHAP attributions), "
        f"cycling through {args.distinct} distinct bodies. The model is the demo's credit Pipeline "
        "(imputers, OneHotEncoder, GradientBoostingClassifier) saved with `explainable_model.save_model`; "
        f"both servers serve the same folder with {args.workers} uvicorn workers and "
        '`EXPLAINABLE_MODEL_N_JOBS=1`, one server at a time, in the order of the table rows. '
        '"outputs differing" counts responses whose bytes differ from the first response to the same body.',
        "",
        "| server | requests | errors | outputs differing | throughput, requests/s | p50 ms | p99 ms | mean ms "
        "| 1/5/15-min load average before | after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for result in results:
        s: Summary = result["summary"]
        lines.append(
            f"| {result['name']} | {s.requests} | {s.errors} | {s.mismatches} | {s.throughput_per_s:.1f} | "
            f"{s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.mean_ms:.2f} | {result['before']} | {result['after']} |"
        )
    lines += [
        "",
        "The load averages, from `os.getloadavg()` as `uptime` shows them, include the benchmark's own "
        "clients and servers and any other work on the shared machine.",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'benchmarks/serve_load.py', *sys.argv[1:]])}` "
        f"({minutes:.1f} minutes).",
        "",
        machine_line(PACKAGES, ", shared with other work"),
        "",
        f"Code: {code_version()}.",
        "",
    ]
    return "\n".join(lines)




def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load per server (default 60)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server (default 2)")
    parser.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    parser.add_argument("--distinct", type=int, default=8, help="distinct request bodies (default 8)")
    parser.add_argument("--warm-up", type=int, default=40, help="untimed requests before the load (default 40)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per server, in ABBA order (default 2)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    started = time.monotonic()
    bodies = build_bodies(DATA, ["Status"], args.rows, args.distinct, None)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as folder:
        model = Path(folder) / "model"
        save_credit_model(model)
        python = str(VENV_BIN / "python")
        servers = [
            (
                "explainable-model serve",
                [python, "-m", "explainable_model", "serve", str(model), "-w", str(args.workers)],
            ),
            (
                "mlflow models serve",
                [
                    python,
                    "-m",
                    "mlflow",
                    "models",
                    "serve",
                    "-m",
                    str(model),
                    "--env-manager",
                    "local",
                    "-w",
                    str(args.workers),
                ],
            ),
        ]
        order = [servers if k % 2 == 0 else servers[::-1] for k in range(args.rounds)]
        runs = [server for round_servers in order for server in round_servers]
        results = [
            measure(name, command, Path(folder) / f"server{i}.log", args, bodies)
            for i, (name, command) in enumerate(runs)
        ]
    section = render(results, args, (time.monotonic() - started) / 60)
    print(section)
    if not args.no_write:
        write_section(args.output, SECTION, section)
    return 1 if any(r["summary"].errors or r["summary"].mismatches for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
