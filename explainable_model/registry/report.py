"""The promotion report: check results, the outcome, and its JSON, text and HTML forms."""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SKIPPED = "skipped"

PROMOTED = "promoted"
REJECTED = "rejected"
CONFLICT = "conflict"
DRY_RUN = "dry_run"
INTERRUPTED = "interrupted"
MOVING = "moving"


@dataclass
class CheckResult:
    """The outcome of one promotion check.

    Attributes
    ----------
    name : str
        ``loads``, ``schema``, ``quality``, ``additivity``, ``drift`` or ``latency``.
    status : str
        ``passed``, ``failed``, ``error`` (the check raised) or ``skipped`` (a check it
        needs did not pass).
    blocking : bool
        Whether the alias may move only if this check passed.
    figure : float or None
        The measured value, in ``unit``.
    threshold : float or None
        The limit the figure was compared with, in the direction that ``comparison`` gives.
    comparison : str
        ``">="``, ``"<="`` or ``""`` when the check has no numeric limit.
    unit : str
    message : str
        One sentence for people.
    details : dict
        Further figures (the holder's figure, rows used, column problems).
    """

    name: str
    status: str
    blocking: bool
    figure: float | None = None
    threshold: float | None = None
    comparison: str = ""
    unit: str = ""
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the check passed."""
        return self.status == PASSED


@dataclass
class PromotionReport:
    """The record of one promotion of a registered model version to an alias.

    Attributes
    ----------
    model_name, version, alias : str
    status : str
        ``promoted`` (the alias now points to ``version``), ``rejected`` (a blocking check did
        not pass), ``conflict`` (another promotion moved the alias while the checks ran),
        ``dry_run`` (checks only) or ``interrupted`` (an exception stopped the promotion).
        ``moving`` is stored just before the alias moves and followed by ``promoted``; a
        stored ``moving`` report without a later one means that the process stopped around
        the move.
    holder_at_start : str or None
        The version the alias pointed to when the checks started.
    holder_at_move : str or None
        The version it pointed to when it was re-read, under the promotion lock, just before
        moving; differs from ``holder_at_start`` only for ``conflict``.
    checks : list of CheckResult
    started_at, finished_at : str
        UTC times in ISO 8601.
    message : str
    report_uri : str or None
        ``runs:/`` URI of the stored JSON report; None for dry runs.
    """

    model_name: str
    version: str
    alias: str
    status: str
    holder_at_start: str | None
    holder_at_move: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    message: str = ""
    report_uri: str | None = None

    @property
    def passed(self) -> bool:
        """Whether every blocking check passed."""
        return all(check.passed for check in self.checks if check.blocking)

    @property
    def failed_checks(self) -> list[str]:
        """Names of the checks that did not pass, blocking or not."""
        return [check.name for check in self.checks if not check.passed]

    @property
    def blocking_failures(self) -> list[str]:
        """Names of the blocking checks that did not pass."""
        return [check.name for check in self.checks if check.blocking and not check.passed]

    def check(self, name: str) -> CheckResult:
        """Return the result of the check called ``name``; raise KeyError if it did not run."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(f"No check named {name!r} in this report; checks: {[c.name for c in self.checks]}")

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-compatible values; non-finite figures become None."""
        data = asdict(self)
        data["passed"] = self.passed
        data["failed_checks"] = self.failed_checks
        for check in data["checks"]:
            for key in ("figure", "threshold"):
                value = check[key]
                if isinstance(value, float) and not math.isfinite(value):
                    check[key] = None
        return data

    def to_json(self) -> str:
        """Return the report as indented, strict JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromotionReport:
        """Rebuild a report from :meth:`to_dict` output, such as a stored JSON report."""
        fields = {key: value for key, value in data.items() if key not in ("passed", "failed_checks")}
        fields["checks"] = [CheckResult(**check) for check in data.get("checks", [])]
        return cls(**fields)

    def headline(self) -> str:
        """Return the outcome in one line."""
        target = f"{self.model_name} version {self.version} -> alias '{self.alias}'"
        if self.status == DRY_RUN:
            verdict = "would be promoted" if self.passed else "would be rejected"
            return f"DRY RUN {target}: {verdict}"
        return f"{self.status.upper()} {target}"

    def to_text(self) -> str:
        """Return the report as a plain-text table for a terminal."""
        lines = [self.headline()]
        lines.append(f"holder when checks started: {_version_text(self.holder_at_start)}")
        if self.holder_at_move is not None or self.status in (PROMOTED, CONFLICT, MOVING):
            lines.append(f"holder before the move:     {_version_text(self.holder_at_move)}")
        if self.message:
            lines.append(self.message)
        rows = [("check", "status", "blocks", "figure", "limit", "note")]
        rows += [
            (
                check.name,
                check.status,
                "yes" if check.blocking else "no",
                _number_text(check.figure, check.unit),
                f"{check.comparison} {_number_text(check.threshold, check.unit)}".strip()
                if check.threshold is not None
                else "-",
                check.message,
            )
            for check in self.checks
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(5)]
            lines.append("  ".join(cells) + "  " + row[5])
        failed = self.blocking_failures
        lines.append(f"blocking checks failed: {', '.join(failed) if failed else 'none'}")
        if self.report_uri:
            lines.append(f"report: {self.report_uri}")
        lines.append(f"started {self.started_at}, finished {self.finished_at}")
        return "\n".join(lines)

    def to_html(self) -> str:
        """Return the report as a standalone HTML page."""
        escape = html.escape
        rows = "\n".join(
            "<tr class='{cls}'><td>{name}</td><td>{status}</td><td>{blocking}</td><td>{figure}</td>"
            "<td>{limit}</td><td>{message}</td></tr>".format(
                cls="ok" if check.passed else "bad",
                name=escape(check.name),
                status=escape(check.status),
                blocking="yes" if check.blocking else "no",
                figure=escape(_number_text(check.figure, check.unit)),
                limit=escape(
                    f"{check.comparison} {_number_text(check.threshold, check.unit)}".strip()
                    if check.threshold is not None
                    else "-"
                ),
                message=escape(check.message),
            )
            for check in self.checks
        )
        details = "\n".join(
            f"<h3>{escape(check.name)}</h3><pre>{escape(json.dumps(check.details, indent=2, default=str))}</pre>"
            for check in self.checks
            if check.details
        )
        return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(self.headline())}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
tr.ok td:nth-child(2) {{ color: #176f2c; }}
tr.bad td:nth-child(2) {{ color: #b00020; font-weight: bold; }}
</style></head><body>
<h1>{escape(self.headline())}</h1>
<p>Holder when checks started: {escape(_version_text(self.holder_at_start))}.
Holder before the move: {escape(_version_text(self.holder_at_move))}.</p>
<p>{escape(self.message)}</p>
<table><tr><th>check</th><th>status</th><th>blocks</th><th>figure</th><th>limit</th><th>note</th></tr>
{rows}
</table>
<p>Started {escape(self.started_at)}, finished {escape(self.finished_at)}.</p>
<h2>Details</h2>
{details}
</body></html>
"""


def _version_text(version: str | None) -> str:
    return "none" if version is None else f"version {version}"


def _number_text(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}".strip()
