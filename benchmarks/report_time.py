"""Time that the explanation report adds to ``log_model`` for the credit example's model.

Fits the Pipeline of examples/credit_scoring.py (imputers, one-hot encoding, gradient boosting)
on the credit data. Then logs it to a temporary SQLite store alternately with and without the
report (``log_report=True`` / ``False``). Then times ``build_report`` alone on the model's
100-row background sample. Prints a Markdown table for docs/benchmarks.md.

Run: .venv/bin/python benchmarks/report_time.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from _common import machine_line  # noqa: E402
from credit_scoring import DATA, build_pipeline  # noqa: E402

import explainable_model as em  # noqa: E402
from explainable_model.preparation import SaveOptions, prepare  # noqa: E402
from explainable_model.report_builder import ReportOptions, build_report  # noqa: E402

REPEATS = 5


def main() -> None:
    data = pd.read_csv(DATA)
    features, target = data.drop(columns="Status"), data["Status"]
    pipeline = build_pipeline(features).fit(features, target)

    with tempfile.TemporaryDirectory() as folder:
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        mlflow.set_experiment("report-time")
        timings: dict[bool, list[float]] = {True: [], False: []}
        # One untimed call of each kind loads the libraries and creates the store's tables.
        for repeat in range(REPEATS + 1):
            for log_report in (False, True):
                with mlflow.start_run():
                    start = time.perf_counter()
                    em.log_model(pipeline, name="credit_model", background_data=features, log_report=log_report)
                    elapsed = time.perf_counter() - start
                if repeat:
                    timings[log_report].append(elapsed)

        prepared = prepare(pipeline, features, SaveOptions(), None, None)
        alone = []
        for _ in range(REPEATS):
            with tempfile.TemporaryDirectory() as output:
                start = time.perf_counter()
                build_report(prepared.engine, prepared.background, output, ReportOptions(), "credit model")
                alone.append(time.perf_counter() - start)
        mlflow.set_tracking_uri(None)

    without = statistics.median(timings[False])
    with_report = statistics.median(timings[True])
    print("| log_model without report, median s | with report, median s | added s | build_report alone, median s |")
    print("|---:|---:|---:|---:|")
    print(f"| {without:.2f} | {with_report:.2f} | {with_report - without:.2f} | {statistics.median(alone):.2f} |")
    print()
    print(f"Runs: {REPEATS} of each, alternating. " + machine_line(["mlflow", "shap", "matplotlib", "scikit-learn"]))


if __name__ == "__main__":
    main()
