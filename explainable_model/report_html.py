"""HTML of the explanation report and of its per-row LIME and force-plot pages.

Every page is self-contained: images are embedded as base64 data URIs and shap's JavaScript
bundle is inlined. The MLflow UI (3.17) shows an ``.html`` artifact in a sandboxed iframe loaded
from a ``blob:`` URL, where relative links to other artifacts do not resolve.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape

from explainable_model.report_plots import force_script

_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin-top: 24px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.summary th { background: #f4f4f4; }
.note { color: #555; font-size: 13px; }
.plot { max-width: 100%; }
.bar { display: inline-block; height: 12px; vertical-align: middle; }
.bar.up { background: #ff0d57; } .bar.down { background: #1e88e5; }
.force-plot { min-height: 130px; overflow-x: auto; }
"""


@dataclass(frozen=True)
class LimeRow:
    """One feature of a LIME explanation: its value in the row and its weight (0 when not selected)."""

    feature: str
    value: str
    weight: float


@dataclass(frozen=True)
class LimeSection:
    """A row's LIME explanation, from the ``lime`` columns of ``predict``."""

    target: str
    model_value: float
    intercept: float
    local_prediction: float
    score: float
    rows: list[LimeRow]


@dataclass(frozen=True)
class SampleSection:
    """The content of one sample row's section of the report."""

    title: str
    description: str
    force_plot_html: str
    force_page: str
    lime: LimeSection | None = None
    lime_page: str | None = None


@dataclass(frozen=True)
class ImportanceRow:
    """One line of the global importance table."""

    feature: str
    mean_abs: float
    mean: float


@dataclass(frozen=True)
class ReportContent:
    """Everything that :func:`report_page` lays out."""

    title: str
    summary: list[tuple[str, str]]
    units_text: str
    explained_text: str
    importance: list[ImportanceRow]
    bar_png: bytes
    beeswarm_png: bytes
    samples: list[SampleSection] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _document(title: str, body: str, head: str = "") -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style>{head}</head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _image(png: bytes, alt: str, element_id: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f"<img id='{element_id}' class='plot' alt='{escape(alt, quote=True)}' src='data:image/png;base64,{encoded}'>"


def _number(value: float) -> str:
    return f"{value:.4g}"


def lime_html(section: LimeSection) -> str:
    """Return a LIME explanation as an HTML fragment: the surrogate's figures and a weight per feature."""
    largest = max((abs(row.weight) for row in section.rows), default=0.0) or 1.0
    lines = []
    for row in section.rows:
        width = round(160 * abs(row.weight) / largest)
        direction = "up" if row.weight >= 0 else "down"
        lines.append(
            f"<tr><td>{escape(row.feature)}</td><td>{escape(row.value)}</td>"
            f"<td class='number'>{row.weight:+.4f}</td>"
            f"<td><span class='bar {direction}' style='width:{width}px'></span></td></tr>"
        )
    selected = "".join(lines) or "<tr><td colspan='4'>No feature was selected.</td></tr>"
    return (
        "<div class='lime-explanation'>"
        f"<p>LIME explains the {escape(section.target)}: model {_number(section.model_value)}, "
        f"local surrogate {_number(section.local_prediction)} = intercept {_number(section.intercept)} "
        f"+ the weights below; surrogate R² {_number(section.score)}.</p>"
        "<table><tr><th>feature</th><th>value</th><th>weight</th><th></th></tr>"
        f"{selected}</table></div>"
    )


def lime_page(title: str, section: LimeSection) -> str:
    """Return a complete HTML page for one row's LIME explanation."""
    return _document(title, f"<h1>{escape(title)}</h1>\n{lime_html(section)}")


def force_page(title: str, description: str, plot_html: str) -> str:
    """Return a complete HTML page for one row's SHAP force plot, with shap's JavaScript inlined."""
    body = (
        f"<h1>{escape(title)}</h1>\n<p class='note'>{escape(description)}</p>\n"
        f"<div class='force-plot'>{plot_html}</div>"
    )
    return _document(title, body, head=force_script())


def report_page(content: ReportContent) -> str:
    """Return the self-contained report page."""
    summary = "".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in content.summary)
    importance = "".join(
        f"<tr><td class='number'>{rank}</td><td>{escape(row.feature)}</td>"
        f"<td class='number'>{row.mean_abs:.4f}</td><td class='number'>{row.mean:+.4f}</td></tr>"
        for rank, row in enumerate(content.importance, start=1)
    )
    parts = [
        f"<h1>{escape(content.title)}</h1>",
        f"<table class='summary'>{summary}</table>",
        "<h2>Global importance</h2>",
        f"<p class='note'>Mean absolute SHAP attribution per raw input feature, in {escape(content.units_text)}, "
        f"for {escape(content.explained_text)}.</p>",
        "<table id='importance'><tr><th>rank</th><th>feature</th>"
        f"<th>mean |SHAP| ({escape(content.units_text)})</th><th>mean SHAP</th></tr>{importance}</table>",
        "<h2>SHAP bar plot</h2>",
        _image(content.bar_png, "SHAP bar plot: mean absolute attribution per feature", "shap-bar"),
        "<h2>SHAP beeswarm plot</h2>",
        "<p class='note'>One point per row and feature; colour is the feature's value "
        "(grey for text categories).</p>",
        _image(content.beeswarm_png, "SHAP beeswarm plot: every row's attributions", "shap-beeswarm"),
    ]
    if content.samples:
        parts.append("<h2>Sample rows</h2>")
    for index, sample in enumerate(content.samples):
        parts.append(f"<h3>{escape(sample.title)}</h3><p class='note'>{escape(sample.description)}</p>")
        parts.append("<h4>SHAP force plot</h4>")
        parts.append(f"<div class='force-plot' id='force-{index}'>{sample.force_plot_html}</div>")
        if sample.lime is not None:
            parts.append(f"<h4>LIME</h4>{lime_html(sample.lime)}")
    if content.files:
        listed = ", ".join(f"<code>{escape(name)}</code>" for name in content.files)
        parts.append(f"<h2>Files</h2><p class='note'>Next to this page: {listed}.</p>")
    return _document(content.title, "\n".join(parts), head=force_script())
