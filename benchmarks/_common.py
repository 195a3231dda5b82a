"""Helpers shared by the benchmark scripts: machine facts and rewriting a docs/benchmarks.md section."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line(packages: list[str], detail: str = "") -> str:
    """Return the "Machine:" line of a benchmark: cores, CPU model, ``detail``, Python and package versions."""
    versions = ", ".join(f"{name} {importlib_metadata.version(name)}" for name in packages)
    return f"Machine: {os.cpu_count()} cores, {cpu_model()}{detail}; Python {platform.python_version()}; {versions}."


def code_version() -> str:
    """Return the checked-out commit and the package files changed since it, as git reports them."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "explainable_model"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (git failed)"
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    return f"commit {commit}" + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def load_average() -> str:
    """Return the 1-minute load average, or "unknown" where the platform has none."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section under ``heading`` in ``path`` (up to the next level-2 heading), or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("" if end < 0 else "\n" + text[end + 1 :])
    path.write_text(text.rstrip("\n") + "\n")

class OtherLoad:
    """CPU time that processes outside this script's process tree use, read from /proc (Linux).

    The machine may be shared, and work of other processes slows every measurement. ``start``
    and ``cores`` bracket a measurement, and ``cores`` returns the mean number of cores that other
    processes kept busy in between, or NaN where /proc is missing.
    """

    def __init__(self) -> None:
        self._ticks_per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: tuple[float, int, int] | None = None

    @staticmethod
    def _busy_ticks() -> int:
        # The first line of /proc/stat sums all cores: user nice system idle iowait irq softirq steal ...
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        return sum(fields) - fields[3] - fields[4]

    @staticmethod
    def _own_ticks() -> int:
        # utime + stime of this process and of every descendant, such as worker processes and servers.
        parents, ticks = {}, {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            # The command name in brackets may contain spaces, so fields are counted after it.
            fields = text[text.rindex(")") + 2 :].split()
            pid = int(stat.parent.name)
            parents[pid] = int(fields[1])
            ticks[pid] = int(fields[11]) + int(fields[12])
        total, pending = 0, [os.getpid()]
        while pending:
            pid = pending.pop()
            total += ticks.get(pid, 0)
            pending.extend(child for child, parent in parents.items() if parent == pid)
        return total

    def start(self) -> None:
        """Record the current busy and own CPU time."""
        try:
            self._start = (time.perf_counter(), self._busy_ticks(), self._own_ticks())
        except (OSError, ValueError, IndexError):
            self._start = None

    def cores(self) -> float:
        """Return the mean cores used by other processes since ``start``, NaN if unknown."""
        if self._start is None:
            return float("nan")
        try:
            busy, own = self._busy_ticks(), self._own_ticks()
        except (OSError, ValueError, IndexError):
            return float("nan")
        started, busy_start, own_start = self._start
        seconds = time.perf_counter() - started
        other = (busy - busy_start) - (own - own_start)
        return max(0.0, other / self._ticks_per_second / seconds)
