"""Draw the report's plots with shap's own plotting: bar and beeswarm PNGs, force plots.

Figures are drawn on matplotlib's Agg canvas directly, so building a report neither needs a
display nor changes the pyplot backend or figures of the calling program.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import shap
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PNG_DPI = 110
_WIDTH_INCHES = 8.0
_ROW_INCHES = 0.42


def _png(draw: Callable[[Axes], None], n_rows: int) -> bytes:
    """Return a PNG of one figure drawn by ``draw`` on its only axes."""
    figure = Figure(figsize=(_WIDTH_INCHES, 1.6 + _ROW_INCHES * n_rows))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw(axes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()


@contextmanager
def _seeded_global_random(seed: int) -> Iterator[None]:
    # shap's beeswarm jitters points with numpy's global random state. Seeding it makes the
    # image the same on every run, and restoring it afterwards leaves the caller's state alone.
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def bar_png(explanation: shap.Explanation, axis_label: str, title: str, max_display: int) -> bytes:
    """Return shap's bar plot of mean absolute attribution per feature as PNG bytes."""
    # The bar plot needs only the values, and dropping the data keeps feature values out of
    # the tick labels.
    values_only = shap.Explanation(explanation.values, feature_names=explanation.feature_names)
    displayed_features = min(max_display, len(explanation.feature_names))

    def draw(axes: Axes) -> None:
        shap.plots.bar(values_only, max_display=max_display, show=False, ax=axes)
        axes.set_xlabel(axis_label)
        axes.set_title(title, fontsize=11)

    return _png(draw, displayed_features)


def beeswarm_png(explanation: shap.Explanation, axis_label: str, title: str, max_display: int, seed: int) -> bytes:
    """Return shap's beeswarm plot of every row's attributions as PNG bytes.

    Points are coloured by feature value for numeric features and grey for text categories.
    """
    displayed_features = min(max_display, len(explanation.feature_names))

    def draw(axes: Axes) -> None:
        with _seeded_global_random(seed):
            shap.plots.beeswarm(explanation, max_display=max_display, show=False, ax=axes, plot_size=None)
        axes.set_xlabel(axis_label)
        axes.set_title(title, fontsize=11)

    return _png(draw, displayed_features)


def force_plot(
    base_value: float, values: np.ndarray, row: np.ndarray, feature_names: list[str], output_name: str
) -> Any:
    """Return shap's additive force plot of one row, a visualizer whose ``html()`` needs shap's JS bundle."""
    display_values = np.array([_display_value(value) for value in row], dtype=object)
    return shap.plots.force(
        float(base_value),
        np.asarray(values, dtype="float64"),
        features=display_values,
        feature_names=list(feature_names),
        out_names=output_name,
        matplotlib=False,
        show=False,
    )


def force_script() -> str:
    """Return shap's JavaScript bundle in a ``<script>`` element, inlined so no page fetches it."""
    return shap.getjs()


def _display_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
