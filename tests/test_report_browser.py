"""The explanation report in a real browser: headless Chromium driven over the DevTools protocol.

Chromium comes from the distribution (tests/chromium_setup.sh) and is driven by the
``playwright`` package, never by a browser that playwright downloads. Without Chromium the
tests are skipped, except with CI=true, where they fail. Set EXPLAINABLE_MODEL_SCREENSHOT to a
file path to save a screenshot of the report there (docs/report.png is made that way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sklearn.ensemble import GradientBoostingClassifier

import explainable_model as em
from tests.helpers import credit_pipeline

# Flags for a root user on a machine without network access: without the background
# networking flags Chromium waits on network services at start-up.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 60_000
RENDER_TIMEOUT_MS = 20_000


def chromium_path() -> str:
    """Return the Chromium executable, or skip (fail under CI=true) when it or playwright is missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    if path is None:
        problem = "Chromium is not installed; run tests/chromium_setup.sh (make test-setup)."
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "The playwright package is missing; pip install -e '.[dev]'."
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return str(path)


@pytest.fixture(scope="module")
def report_path(tmp_path_factory, credit_xy):
    X, y = credit_xy
    model = credit_pipeline(X, y, GradientBoostingClassifier(n_estimators=30, random_state=0))
    path = tmp_path_factory.mktemp("browser_model") / "model"
    em.save_model(model, path, background_data=X)
    built = em.report(str(path), X.iloc[:300], tmp_path_factory.mktemp("browser_report"), explained_class="bad")
    return built.report


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # playwright starts Chromium with a new temporary profile and removes it on close.
        instance = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield instance
        finally:
            instance.close()


def open_page(browser, path: Path):
    """Open ``path`` and return the page with the console errors, page errors and requests it made."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    events: dict[str, list[str]] = {"console_errors": [], "page_errors": [], "requests": []}
    page.on("console", lambda message: message.type == "error" and events["console_errors"].append(message.text))
    page.on("pageerror", lambda error: events["page_errors"].append(str(error)))
    page.on("request", lambda request: events["requests"].append(request.url))
    page.goto(path.as_uri(), wait_until="load", timeout=RENDER_TIMEOUT_MS)
    # shap's force plot draws its SVG paths after React mounts the component.
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.force-plot')).every(e => e.querySelectorAll('svg path').length > 0)",
        timeout=RENDER_TIMEOUT_MS,
    )
    return page, events


def test_report_loads_without_errors(browser, report_path):
    page, events = open_page(browser, report_path)

    assert events["console_errors"] == []
    assert events["page_errors"] == []
    assert events["requests"] == [report_path.as_uri()]
    page.close()


def test_report_images_render(browser, report_path):
    page, _ = open_page(browser, report_path)
    widths = page.eval_on_selector_all("img", "images => images.map(image => image.naturalWidth)")
    ids = page.eval_on_selector_all("img", "images => images.map(image => image.id)")

    assert ids == ["shap-bar", "shap-beeswarm"]
    assert all(width > 0 for width in widths), widths
    page.close()


def test_report_force_plots_render(browser, report_path):
    page, _ = open_page(browser, report_path)
    plots = page.eval_on_selector_all(
        ".force-plot svg",
        "svgs => svgs.map(svg => [svg.getBoundingClientRect().width, svg.querySelectorAll('text').length])",
    )
    labels = page.inner_text("#force-0")

    assert len(plots) == 3
    assert all(width > 300 and texts > 5 for width, texts in plots), plots
    assert "log_odds (bad)" in labels
    page.close()


def test_report_importance_table_lists_features(browser, report_path, credit_xy):
    page, _ = open_page(browser, report_path)
    features = page.eval_on_selector_all("#importance tr td:nth-child(2)", "cells => cells.map(c => c.textContent)")

    assert sorted(features) == sorted(credit_xy[0].columns)
    assert "log-odds" in page.inner_text("#importance")
    screenshot = os.environ.get("EXPLAINABLE_MODEL_SCREENSHOT")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
    page.close()


def test_force_page_renders(browser, report_path):
    page, events = open_page(browser, report_path.parent / "force_row_0.html")

    assert events["console_errors"] == []
    assert events["page_errors"] == []
    assert page.eval_on_selector_all(".force-plot svg", "svgs => svgs.length") == 1
    page.close()
