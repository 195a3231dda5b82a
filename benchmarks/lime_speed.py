"""Measure the speed of the batched LIME engine against a loop of lime's explain_instance.

Two workloads, each with two models: a GradientBoostingClassifier and a LogisticRegression,
which is cheap to evaluate. Both sides explain class 1 of the same fitted model with the same
``num_samples``.

* credit: the credit data in ``examples/data/credit_data.csv`` (target ``Status``), a Pipeline
  with imputers, a one-hot encoder for the text columns and the classifier. The
  LogisticRegression Pipeline also scales the numbers. lime needs numeric
  arrays, so it gets the usual workaround: ordinal-encoded training rows (missing numbers
  imputed with the column median, a missing category as a code of its own) and a predict_fn
  that decodes the array back into a DataFrame. The engine takes the raw rows. The explained
  rows are rows without missing values, so that both sides explain identical inputs.
* synthetic: 30 features from ``sklearn.datasets.make_classification``, the classifier fitted
  on the numeric array (after a StandardScaler for the LogisticRegression).

The model's time is measured inside the predict functions, so the table also shows the time
each side spends on LIME's own work (sampling, distances, feature selection and fitting).

Run from the repository root::

    .venv/bin/python benchmarks/lime_speed.py

``--lime-rows`` times the lime loop on the first rows only, to shorten the run, and the table
then says so. It prints the table and writes it, with the command, machine and package versions, under the
"LIME" heading of ``docs/benchmarks.md`` (``--output`` changes the path, ``--no-write`` skips
it). Other sections of that file are kept.

NOTE: the engine's time on the LogisticRegression rows is mostly LIME's own work, and on a
shared 2-core machine it varied by about a third between runs, more than the best of 3 removes.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from lime.lime_tabular import LimeTabularExplainer
from pandas.api import types as ptypes
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import machine_line, write_section  # noqa: E402

from explainable_model.explainers.lime import LimeExplainer  # noqa: E402
from explainable_model.features import describe_features  # noqa: E402
from tests.helpers import credit_pipeline  # noqa: E402

CREDIT_DATA = ROOT / "examples" / "data" / "credit_data.csv"
PACKAGES = ["numpy", "scipy", "pandas", "scikit-learn", "lime"]
SECTION = "## LIME"


class TimedFunction:
    """Predict function wrapper that adds up the seconds spent inside the wrapped function."""

    def __init__(self, function: Callable) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, data):
        start = time.perf_counter()
        output = self.function(data)
        self.seconds += time.perf_counter() - start
        return output


@dataclass
class Workload:
    """A model with what the engine and lime each need to explain the same rows."""

    name: str
    model: str
    description: str
    engine: LimeExplainer
    engine_rows: pd.DataFrame
    engine_predict: Callable[[pd.DataFrame], np.ndarray]
    lime: LimeTabularExplainer
    lime_rows: np.ndarray
    lime_predict: Callable[[np.ndarray], np.ndarray]


@dataclass
class Timing:
    rows: int
    seconds: float
    model_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds

    @property
    def own_rows_per_second(self) -> float:
        return self.rows / (self.seconds - self.model_seconds)

    @property
    def model_rows_per_second(self) -> float:
        return self.rows / self.model_seconds


def credit_workloads(n_rows: int, num_samples: int) -> list[Workload]:
    frame = pd.read_csv(CREDIT_DATA)
    features, target = frame.drop(columns="Status"), frame["Status"]
    models = {
        "GradientBoosting": credit_pipeline(features, target, GradientBoostingClassifier(random_state=0)),
        # scale=True adds the StandardScaler after the median imputer, as usual for a linear model.
        "LogisticRegression": credit_pipeline(features, target, LogisticRegression(max_iter=1000), scale=True),
    }
    specs = describe_features(features)
    for spec in specs:
        spec.accepts_missing = True  # the Pipeline imputes every column
    engine = LimeExplainer.from_training_data(features, specs, num_samples=num_samples)

    text_columns = [c for c in features.columns if not ptypes.is_numeric_dtype(features[c])]
    categories = {c: sorted(features[c].dropna().unique()) for c in text_columns}
    encoded = features.copy()
    for column in features.columns:
        if column in text_columns:
            codes = {value: code for code, value in enumerate(categories[column])}
            # A missing category gets the code after the last category.
            encoded[column] = features[column].map(codes).fillna(len(categories[column]))
        else:
            encoded[column] = features[column].fillna(features[column].median())
    encoded_array = encoded.to_numpy(dtype=np.float64)

    def decode(array: np.ndarray) -> pd.DataFrame:
        decoded = pd.DataFrame(array, columns=features.columns)
        for column in text_columns:
            values = np.array(categories[column] + [np.nan], dtype=object)
            decoded[column] = pd.Series(values[decoded[column].to_numpy().astype(int)]).astype(features[column].dtype)
        return decoded

    complete = features.dropna().index[:n_rows]
    lime = LimeTabularExplainer(
        encoded_array,
        categorical_features=[features.columns.get_loc(c) for c in text_columns],
        feature_names=list(features.columns),
        random_state=0,
    )
    engine_rows = features.loc[complete].reset_index(drop=True)
    # The model is bound as a default argument, because a closure would see the loop's last model.
    return [
        Workload(
            name="credit",
            model=name,
            description=f"{len(features)} training rows, {features.shape[1]} features ({len(text_columns)} text)",
            engine=engine,
            engine_rows=engine_rows,
            engine_predict=model.predict_proba,
            lime=lime,
            lime_rows=encoded_array[complete],
            lime_predict=lambda array, model=model: model.predict_proba(decode(array)),
        )
        for name, model in models.items()
    ]


def synthetic_workloads(n_rows: int, num_samples: int) -> list[Workload]:
    x, y = make_classification(n_samples=5000, n_features=30, n_informative=10, random_state=0)
    models = {
        "GradientBoosting": GradientBoostingClassifier(random_state=0).fit(x, y),
        "LogisticRegression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y),
    }
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    engine = LimeExplainer.from_training_data(frame, describe_features(frame), num_samples=num_samples)
    lime = LimeTabularExplainer(x, random_state=0)
    return [
        Workload(
            name="synthetic",
            model=name,
            description="5000 training rows, 30 numeric features",
            engine=engine,
            engine_rows=frame.iloc[:n_rows],
            engine_predict=lambda data, model=model: model.predict_proba(data.to_numpy()),
            lime=lime,
            lime_rows=x[:n_rows],
            lime_predict=model.predict_proba,
        )
        for name, model in models.items()
    ]


def time_engine(workload: Workload, n_rows: int) -> Timing:
    predict = TimedFunction(workload.engine_predict)
    start = time.perf_counter()
    workload.engine.explain(workload.engine_rows.iloc[:n_rows], predict, labels=1, seed=0)
    return Timing(n_rows, time.perf_counter() - start, predict.seconds)


def time_lime(workload: Workload, n_rows: int, num_samples: int) -> Timing:
    predict = TimedFunction(workload.lime_predict)
    start = time.perf_counter()
    for row in workload.lime_rows[:n_rows]:
        workload.lime.explain_instance(row, predict, labels=(1,), num_samples=num_samples)
    return Timing(n_rows, time.perf_counter() - start, predict.seconds)




def render(results: list[tuple[Workload, Timing, Timing]], args: argparse.Namespace) -> str:
    lines = [
        SECTION,
        "",
        "Rows explained per second by `LimeExplainer.explain` (one call for all rows) and by a loop "
        "of lime's `LimeTabularExplainer.explain_instance`, one call per row. Both explain class 1 "
        "of the same fitted model with "
        f"num_samples={args.num_samples} and the default "
        "10 features, quartile discretization and `auto` feature selection. Each side ran "
        f"{args.repeats} time{'s' if args.repeats != 1 else ''} and the fastest run is shown.",
        "",
        "Each workload is measured with two models. GradientBoosting is a GradientBoostingClassifier "
        "(for credit in a Pipeline with a median imputer for numbers and a most-frequent imputer and "
        "a OneHotEncoder for text). LogisticRegression is a cheap model: for credit the same Pipeline "
        "with a StandardScaler after the numeric imputer, for synthetic a StandardScaler and the "
        "LogisticRegression. For credit the model time includes the Pipeline's preprocessing of the "
        "DataFrame.",
        "",
        "\"model share\" is the part of the engine's time spent inside the model's predict function. "
        '"LIME work ratio" compares the time outside the predict functions: sampling, decoding for '
        "the engine, distances, feature selection and fitting. lime decodes its numeric arrays into "
        "DataFrames inside its predict_fn, so that decoding counts as model time on lime's side. "
        '"ratio bound" is the ratio that the engine would reach if its own work took no time, with '
        "the model calls as measured.",
        "",
        "| workload | model | data | engine rows | engine rows/s | lime rows | lime rows/s | ratio | "
        "model share | LIME work ratio | ratio bound |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, engine, lime in results:
        lines.append(
            f"| {workload.name} | {workload.model} | {workload.description} | "
            f"{engine.rows} | {engine.rows_per_second:.1f} | "
            f"{lime.rows} | {lime.rows_per_second:.1f} | {engine.rows_per_second / lime.rows_per_second:.1f}x | "
            f"{engine.model_seconds / engine.seconds:.0%} | "
            f"{engine.own_rows_per_second / lime.own_rows_per_second:.1f}x | "
            f"{engine.model_rows_per_second / lime.rows_per_second:.1f}x |"
        )
    lines += ["", *summary(results, args.target)]
    lines += [
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'benchmarks/lime_speed.py', *sys.argv[1:]])}`",
        "",
        machine_line(PACKAGES),
        "",
    ]
    if any(lime.rows < engine.rows for _, engine, lime in results):
        lines += [
            'The lime loop was timed on the first rows only (the "lime rows" column) and is reported per row.',
            "",
        ]
    return "\n".join(lines)


def summary(results: list[tuple[Workload, Timing, Timing]], target: float) -> list[str]:
    """List the rows that reach the target ratio and, for the others, what caps their ratio."""

    def label(workload: Workload) -> str:
        return f"{workload.name} with {workload.model}"

    met, missed = [], []
    for workload, engine, lime in results:
        ratio = engine.rows_per_second / lime.rows_per_second
        bound = engine.model_rows_per_second / lime.rows_per_second
        if ratio >= target:
            met.append(f"{label(workload)} ({ratio:.1f}x)")
        elif bound < target:
            missed.append(
                f"{label(workload)} ({ratio:.1f}x) is capped by its model calls: even if LIME's own work "
                f"took no time, the ratio would be {bound:.1f}x"
            )
        else:
            share = 1 - engine.model_seconds / engine.seconds
            own_ratio = engine.own_rows_per_second / lime.own_rows_per_second
            missed.append(
                f"{label(workload)} ({ratio:.1f}x) is not capped by the model ({bound:.1f}x bound) but by "
                f"the engine's own work, {share:.0%} of its time and {own_ratio:.1f}x "
                "faster than lime's"
            )
    lines = [f"Target: {target:g}x. Rows that reach it: {', '.join(met) if met else 'none'}."]
    if missed:
        lines += ["", "Rows below it:", "", *(f"- {line}." for line in missed)]
    lines += [
        "",
        "The engine's time cannot drop below its model time, so the ratio cannot exceed the ratio bound: "
        "batching cuts LIME's own work, not the cost of predicting num_samples perturbations per row.",
    ]
    return lines




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500, help="rows explained by the engine (default 500)")
    parser.add_argument("--lime-rows", type=int, default=500, help="rows explained by the lime loop (default 500)")
    parser.add_argument("--num-samples", type=int, default=5000, help="perturbations per row (default 5000)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md", help="Markdown file to update")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side; the fastest is kept (default 3)")
    parser.add_argument(
        "--target", type=float, default=10.0, help="target ratio for the summary under the table (default 10)"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table without writing the file")
    args = parser.parse_args()

    results = []
    started = time.perf_counter()
    workloads = [w for build in (credit_workloads, synthetic_workloads) for w in build(args.rows, args.num_samples)]
    for workload in workloads:
        # Warm up both sides once, so that imports and first-call costs are not timed.
        time_engine(workload, 2)
        time_lime(workload, 2, args.num_samples)
        # Keep the fastest of the repeats on each side, because other processes on the machine
        # only ever add time.
        engine = min((time_engine(workload, args.rows) for _ in range(args.repeats)), key=lambda t: t.seconds)
        lime_rows = min(args.lime_rows, args.rows)
        lime = min(
            (time_lime(workload, lime_rows, args.num_samples) for _ in range(args.repeats)), key=lambda t: t.seconds
        )
        print(
            f"{workload.name} {workload.model}: engine {engine.rows_per_second:.1f} rows/s, "
            f"lime {lime.rows_per_second:.1f} rows/s ({time.perf_counter() - started:.0f} s so far)",
            flush=True,
        )
        results.append((workload, engine, lime))

    section = render(results, args)
    print(section)
    print(f"Run time: {time.perf_counter() - started:.0f} s", flush=True)
    if not args.no_write:
        write_section(args.output, SECTION, section)


if __name__ == "__main__":
    main()
