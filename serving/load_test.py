"""Bounded load test of a model server on this machine: N clients for T seconds.

Each client thread sends ``dataframe_split`` JSON requests to ``URL/invocations`` one after
another on its own keep-alive session, until the duration or the request cap is reached. The
requests cycle through ``--distinct`` bodies of ``--rows`` rows each, taken from a CSV file.
Every response to the same body must have the same bytes as the first one.

Run from the repository root against a running server::

    .venv/bin/python serving/load_test.py --url http://127.0.0.1:5000 --clients 4 --seconds 60

It prints the request count, errors, mismatched outputs, p50 and p99 latency and throughput,
and with ``--json PATH`` also writes them as JSON. It exits with 1 when any request failed or
any output differed. Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import requests

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "examples" / "data" / "credit_data.csv"
REQUEST_TIMEOUT_S = 30.0
MAX_SECONDS = 3600.0
MAX_CLIENTS = 64
# Upper bound on the requests of one client, whatever the duration.
MAX_REQUESTS_PER_CLIENT = 1_000_000


@dataclass
class ClientResult:
    """What one client thread measured."""

    latencies_s: list[float] = field(default_factory=list)
    sent: int = 0
    errors: int = 0
    mismatches: int = 0
    first_error: str | None = None


@dataclass
class Summary:
    """The load test's result."""

    url: str
    clients: int
    seconds: float
    rows_per_request: int
    distinct_bodies: int
    params: dict[str, Any] | None
    requests: int
    errors: int
    mismatches: int
    throughput_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    first_error: str | None


def check_loopback(url: str) -> None:
    """Raise ValueError unless ``url`` is http(s) on a loopback address of this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--url must be an http:// URL with a host, got {url!r}.")
    addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    outside = sorted(address for address in addresses if not ipaddress.ip_address(address).is_loopback)
    if outside:
        raise ValueError(f"--url must point to this machine (127.0.0.1); {parts.hostname!r} resolves to {outside}.")


def _json_value(value: Any) -> Any:
    # Missing values become null. DataFrame.to_json would do that too, but it rounds floats.
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value


def build_bodies(data: Path, drop: Sequence[str], rows: int, distinct: int, params: dict | None) -> list[bytes]:
    """Return ``distinct`` JSON request bodies of ``rows`` consecutive rows each."""
    frame = pd.read_csv(data).drop(columns=[c for c in drop if c], errors="ignore")
    if len(frame) < rows * distinct:
        raise ValueError(f"{data} has {len(frame)} rows; --rows {rows} times --distinct {distinct} needs more.")
    bodies = []
    for i in range(distinct):
        part = frame.iloc[i * rows : (i + 1) * rows]
        records = [[_json_value(value) for value in row] for row in part.itertuples(index=False)]
        body: dict[str, Any] = {"dataframe_split": {"columns": list(part.columns), "data": records}}
        if params:
            body["params"] = params
        bodies.append(json.dumps(body).encode())
    return bodies


def _run_client(
    url: str, bodies: list[bytes], deadline: float, offset: int, expected: dict[int, str], lock: threading.Lock
) -> ClientResult:
    result = ClientResult()
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    for n in range(MAX_REQUESTS_PER_CLIENT):
        if time.monotonic() >= deadline:
            break
        index = (offset + n) % len(bodies)
        result.sent += 1
        start = time.perf_counter()
        try:
            response = session.post(
                f"{url}/invocations", data=bodies[index], headers=headers, timeout=REQUEST_TIMEOUT_S
            )
        except requests.RequestException as error:
            result.errors += 1
            result.first_error = result.first_error or f"{type(error).__name__}: {error}"
            continue
        result.latencies_s.append(time.perf_counter() - start)
        if response.status_code != 200:
            result.errors += 1
            result.first_error = result.first_error or f"HTTP {response.status_code}: {response.text[:300]}"
            continue
        digest = hashlib.sha256(response.content).hexdigest()
        with lock:
            reference = expected.setdefault(index, digest)
        if digest != reference:
            result.mismatches += 1
    session.close()
    return result


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    # Nearest-rank percentile.
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def run_load(url: str, bodies: list[bytes], clients: int, seconds: float, params: dict | None, rows: int) -> Summary:
    """Run ``clients`` threads against ``url`` for ``seconds`` and summarize what they measured."""
    check_loopback(url)
    expected: dict[int, str] = {}
    lock = threading.Lock()
    results = [ClientResult() for _ in range(clients)]
    start = time.monotonic()
    deadline = start + seconds

    def work(k: int) -> None:
        results[k] = _run_client(url, bodies, deadline, k, expected, lock)

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A request in flight at the deadline may take up to its own timeout.
        thread.join(timeout=seconds + REQUEST_TIMEOUT_S + 5)
    elapsed = time.monotonic() - start

    latencies = [value for result in results for value in result.latencies_s]
    errors = sum(result.errors for result in results)
    return Summary(
        url=url,
        clients=clients,
        seconds=round(elapsed, 1),
        rows_per_request=rows,
        distinct_bodies=len(bodies),
        params=params,
        requests=sum(result.sent for result in results),
        errors=errors,
        mismatches=sum(result.mismatches for result in results),
        throughput_per_s=len(latencies) / elapsed if elapsed > 0 else math.nan,
        p50_ms=1000 * _percentile(latencies, 50),
        p99_ms=1000 * _percentile(latencies, 99),
        mean_ms=1000 * sum(latencies) / len(latencies) if latencies else math.nan,
        first_error=next((r.first_error for r in results if r.first_error), None),
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="server base URL on 127.0.0.1")
    parser.add_argument("--clients", type=int, default=4, help=f"concurrent clients, 1 to {MAX_CLIENTS} (default 4)")
    parser.add_argument("--seconds", type=float, default=60.0, help=f"duration, at most {MAX_SECONDS:.0f} (default 60)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV file of input rows (default: credit data)")
    parser.add_argument("--drop", default="Status", help="comma-separated columns of --data to leave out")
    parser.add_argument("--rows", type=int, default=1, help="rows per request (default 1)")
    parser.add_argument("--distinct", type=int, default=8, help="distinct request bodies to cycle through (default 8)")
    parser.add_argument("--params", type=json.loads, default=None, help='request params as JSON, e.g. \'{"top_k": 3}\'')
    parser.add_argument("--json", type=Path, default=None, help="also write the summary to this JSON file")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be above 0 and at most {MAX_SECONDS:.0f}")
    if args.rows < 1 or args.distinct < 1:
        parser.error("--rows and --distinct must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load test from the command line; return 1 when a request failed or an output differed."""
    args = _arguments(argv)
    try:
        check_loopback(args.url)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    bodies = build_bodies(args.data, args.drop.split(","), args.rows, args.distinct, args.params)
    summary = run_load(args.url.rstrip("/"), bodies, args.clients, args.seconds, args.params, args.rows)
    print(
        f"{summary.requests} requests in {summary.seconds} s from {summary.clients} clients: "
        f"{summary.throughput_per_s:.1f} requests/s, p50 {summary.p50_ms:.2f} ms, p99 {summary.p99_ms:.2f} ms, "
        f"{summary.errors} errors, {summary.mismatches} outputs that differ from the first for the same input"
    )
    if summary.first_error:
        print(f"first error: {summary.first_error}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return 1 if summary.errors or summary.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
