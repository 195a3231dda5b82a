"""Measure SHAP additivity of saved and reloaded explainable models, one per estimator family.

For each dataset and estimator family the script fits a model, saves it with
``explainable_model.save_model`` into a temporary directory, loads it with
``explainable_model.load_model`` and explains held-out rows with ``LoadedModel.explain``. It
then reports the largest ``|base value + sum(attributions) - model output|``, where the model
output is computed here from the fitted estimator in the units that the model declares, next to
the value that ``save_model`` stored in the flavor configuration (``config["additivity"]``).

Datasets: the credit data in ``examples/data/credit_data.csv`` (binary), scikit-learn's
diabetes data (regression) and wine data (multiclass).

Run from the repository root::

    .venv/bin/python benchmarks/additivity.py

It prints the table and writes it, with the command, machine and package versions, to
``docs/additivity.md`` (``--output`` changes the path).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import xgboost
from _common import cpu_model
from pandas.api import types as ptypes
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_wine
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import explainable_model

REPO_ROOT = Path(__file__).resolve().parents[1]
CREDIT_CSV = REPO_ROOT / "examples" / "data" / "credit_data.csv"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "additivity.md"
PACKAGES = ("mlflow", "shap", "scikit-learn", "pandas", "numpy", "xgboost", "lightgbm")
SEED = 0
# Permutation SHAP costs about orderings * (features - 1) * background rows model calls per
# explained row, so sampled methods are checked on few held-out rows to keep the run short.
PERMUTATION_ROWS = 10
PERMUTATION_BACKGROUND = 50

logger = logging.getLogger("benchmarks.additivity")


@dataclass(frozen=True)
class Dataset:
    """A train/test split of one dataset, with its task as the package names it."""

    name: str
    task: str
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series


@dataclass(frozen=True)
class Case:
    """One estimator family: an unfitted model and how to feed and explain it.

    ``scale`` puts a StandardScaler before the model. ``sampled`` marks models that get
    permutation SHAP, which are saved with fewer background rows and checked on fewer rows.
    """

    family: str
    model: Any
    scale: bool = False
    sampled: bool = False


@dataclass
class Result:
    """The measured figures of one case, or the error that stopped it."""

    dataset: str
    task: str
    estimator: str
    method: str = "-"
    units: str = "-"
    rows: int = 0
    max_error: float = float("nan")
    saved_error: float = float("nan")
    saved_rows: int = 0
    seconds: float = 0.0
    error: str = ""


def credit_preprocessor(features: pd.DataFrame, scale: bool) -> ColumnTransformer:
    """Build the credit data's preprocessing: impute numbers, impute and one-hot encode text.

    Parameters
    ----------
    features : pandas.DataFrame
        The raw training columns.
    scale : bool
        Whether to standardize the numeric columns, for models that are sensitive to scale.

    Returns
    -------
    sklearn.compose.ColumnTransformer
    """
    # is_numeric_dtype also catches pandas 3 text columns (dtype "str"), which dtype == object misses.
    text = [name for name in features.columns if not ptypes.is_numeric_dtype(features[name])]
    numeric = [name for name in features.columns if name not in text]
    numeric_steps = [SimpleImputer(strategy="median")] + ([StandardScaler()] if scale else [])
    text_steps = [SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")]
    return ColumnTransformer([
        ("num", make_pipeline(*numeric_steps), numeric),
        ("cat", make_pipeline(*text_steps), text),
    ])


def load_datasets() -> list[Dataset]:
    """Load and split the credit, diabetes and wine data, a quarter of the rows held out.

    Returns
    -------
    list of Dataset
    """
    credit = pd.read_csv(CREDIT_CSV)
    diabetes = load_diabetes(as_frame=True)
    wine = load_wine(as_frame=True)
    sources = [
        # XGBoost takes only integer labels, so the credit outcome is 1 for "bad".
        ("credit", "binary", credit.drop(columns="Status"), (credit["Status"] == "bad").astype(int)),
        ("diabetes", "regression", diabetes.data, diabetes.target),
        ("wine", "multiclass", wine.data, wine.target),
    ]
    datasets = []
    for name, task, features, target in sources:
        stratify = None if task == "regression" else target
        x_train, x_test, y_train, _ = train_test_split(
            features, target, test_size=0.25, random_state=SEED, stratify=stratify
        )
        datasets.append(Dataset(name, task, x_train, x_test.reset_index(drop=True), y_train))
    return datasets


def build_estimator(dataset: str, case: Case, features: pd.DataFrame) -> Any:
    """Put the case's model behind the dataset's usual preprocessing, unfitted.

    Parameters
    ----------
    dataset : str
        Dataset name. Only ``"credit"`` gets imputation and one-hot encoding.
    case : Case
    features : pandas.DataFrame
        The raw training columns, to tell numeric from text columns.

    Returns
    -------
    estimator or sklearn.pipeline.Pipeline
    """
    model = clone(case.model)
    if dataset == "credit":
        return Pipeline([("pre", credit_preprocessor(features, case.scale)), ("model", model)])
    # The bundled datasets have no missing values or text, so only scale-sensitive models get a
    # Pipeline, and bare estimators are covered too.
    return Pipeline([("scale", StandardScaler()), ("model", model)]) if case.scale else model


def cases_for(task: str) -> list[Case]:
    """List the estimator families to check: classifiers, or regressors for regression.

    Parameters
    ----------
    task : {"regression", "binary", "multiclass"}

    Returns
    -------
    list of Case
    """
    # Forests run on one thread so the timings compare families on equal terms.
    forest = {"n_estimators": 50, "max_depth": 8, "n_jobs": 1, "random_state": SEED}
    boosting = {"n_estimators": 50, "random_state": SEED}
    histogram_boosting = {"max_iter": 50, "random_state": SEED}
    mlp = {"hidden_layer_sizes": (32,), "max_iter": 2000, "random_state": SEED}
    if task == "regression":
        return [
            Case("DecisionTreeRegressor", DecisionTreeRegressor(max_depth=8, random_state=SEED)),
            Case("RandomForestRegressor", RandomForestRegressor(**forest)),
            Case("ExtraTreesRegressor", ExtraTreesRegressor(**forest)),
            Case("GradientBoostingRegressor", GradientBoostingRegressor(**boosting)),
            Case("HistGradientBoostingRegressor", HistGradientBoostingRegressor(**histogram_boosting)),
            Case("Ridge", Ridge(alpha=1.0)),
            Case("LinearRegression", LinearRegression()),
            Case("SVR", SVR(), scale=True, sampled=True),
            Case("KNeighborsRegressor", KNeighborsRegressor(), scale=True, sampled=True),
            Case("MLPRegressor", MLPRegressor(**mlp), scale=True, sampled=True),
            Case("XGBRegressor", xgboost.XGBRegressor(n_estimators=100, max_depth=4, random_state=SEED)),
            Case("LGBMRegressor", lightgbm.LGBMRegressor(n_estimators=100, random_state=SEED, verbose=-1)),
        ]
    return [
        Case("DecisionTreeClassifier", DecisionTreeClassifier(max_depth=8, random_state=SEED)),
        Case("RandomForestClassifier", RandomForestClassifier(**forest)),
        Case("ExtraTreesClassifier", ExtraTreesClassifier(**forest)),
        Case("GradientBoostingClassifier", GradientBoostingClassifier(**boosting)),
        Case("HistGradientBoostingClassifier", HistGradientBoostingClassifier(**histogram_boosting)),
        Case("LogisticRegression", LogisticRegression(max_iter=2000), scale=True),
        Case("SVC(probability=True)", SVC(probability=True, random_state=SEED), scale=True, sampled=True),
        Case("KNeighborsClassifier", KNeighborsClassifier(), scale=True, sampled=True),
        Case("MLPClassifier", MLPClassifier(**mlp), scale=True, sampled=True),
        Case("XGBClassifier", xgboost.XGBClassifier(n_estimators=100, max_depth=4, random_state=SEED)),
        Case("LGBMClassifier", lightgbm.LGBMClassifier(n_estimators=100, random_state=SEED, verbose=-1)),
    ]


def output_in_units(estimator: Any, frame: pd.DataFrame, units: str, task: str) -> np.ndarray:
    library = type(estimator[-1] if isinstance(estimator, Pipeline) else estimator).__module__.split(".")[0]
    """Compute the estimator's output in attribution units, independently of the package.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
    frame : pandas.DataFrame
        Raw rows.
    units : {"target", "probability", "log_odds", "logit", "margin"}
        The units that the saved model declares.
    task : {"regression", "binary", "multiclass"}

    Returns
    -------
    numpy.ndarray of shape (n_rows, n_outputs)
        One column for regression and binary tasks (the second class of ``classes_``), one per
        class for multiclass ones.
    """
    if units == "target":
        output = estimator.predict(frame)
    elif units == "probability":
        output = estimator.predict_proba(frame)
        output = output[:, 1] if task == "binary" else output
    elif units in ("log_odds", "logit", "margin") and library in ("xgboost", "lightgbm"):
        # XGBoost and LightGBM have no decision_function; their margin is a predict option.
        option = {"output_margin": True} if library == "xgboost" else {"raw_score": True}
        output = estimator.predict(frame, **option)
    elif units in ("log_odds", "logit", "margin"):
        output = estimator.decision_function(frame)
    else:
        raise ValueError(f"Unknown attribution units {units!r}; expected target, probability or a margin.")
    output = np.asarray(output, dtype="float64")
    return output[:, None] if output.ndim == 1 else output


def run_case(dataset: Dataset, case: Case, workdir: Path) -> Result:
    """Fit, save, load and explain one case, and measure its additivity error.

    Parameters
    ----------
    dataset : Dataset
    case : Case
    workdir : Path
        Directory in which the model is saved, to a new subdirectory named after the case.

    Returns
    -------
    Result
        With ``error`` set, and the other figures left empty, if any step raised.
    """
    result = Result(dataset.name, dataset.task, case.family)
    started = time.perf_counter()
    try:
        estimator = build_estimator(dataset.name, case, dataset.x_train).fit(dataset.x_train, dataset.y_train)
        path = workdir / f"{dataset.name}-{case.family}".replace("(", "_").replace(")", "").replace("=", "_")
        background_size = PERMUTATION_BACKGROUND if case.sampled else 100
        explainable_model.save_model(
            estimator, path, background_data=dataset.x_train, background_size=background_size, seed=SEED
        )
        loaded = explainable_model.load_model(str(path))
        config = loaded.config
        result.method = config["explainers"]["shap"]["method"]
        result.units = config["attribution_units"]
        result.saved_error = float(config["additivity"]["max_error"])
        result.saved_rows = int(config["additivity"]["rows"])

        exact = bool(config["explainers"]["shap"]["exact"])
        rows = dataset.x_test if exact else dataset.x_test.iloc[:PERMUTATION_ROWS]
        attributions = loaded.explain(rows, seed=SEED)
        expected = output_in_units(estimator, rows, result.units, dataset.task)
        values_shape = (len(rows), rows.shape[1], expected.shape[1])
        if attributions.values.shape != values_shape or attributions.base_values.shape != expected.shape:
            raise ValueError(
                f"Attributions have values of shape {attributions.values.shape} and base_values of shape "
                f"{attributions.base_values.shape}; expected {values_shape} and {expected.shape}."
            )
        total = attributions.base_values + attributions.values.sum(axis=1)
        result.max_error = float(np.max(np.abs(total - expected)))
        result.rows = len(rows)
    except Exception as err:  # one failing family must not hide the figures of the others
        result.error = f"{type(err).__name__}: {err}"
        logger.error("%s on %s failed:\n%s", case.family, dataset.name, traceback.format_exc())
    result.seconds = time.perf_counter() - started
    return result


def format_table(results: list[Result]) -> str:
    """Render the results as a Markdown table.

    Parameters
    ----------
    results : list of Result

    Returns
    -------
    str
    """
    header = (
        "| dataset | task | estimator | SHAP method | units | rows checked | largest additivity error "
        "| stored in config (rows) | seconds |"
    )
    lines = [header, "|---|---|---|---|---|---:|---:|---:|---:|"]
    for result in results:
        case = f"| {result.dataset} | {result.task} | {result.estimator}"
        if result.error:
            message = result.error.replace("|", "\\|").replace("\n", " ")
            lines.append(f"{case} | failed: {message} | | | | | {result.seconds:.1f} |")
            continue
        lines.append(
            f"{case} | {result.method} | {result.units} | {result.rows} | {result.max_error:.3g} "
            f"| {result.saved_error:.3g} ({result.saved_rows}) | {result.seconds:.1f} |"
        )
    return "\n".join(lines)




def command_line() -> str:
    """Return the command that started this script, with paths relative to the working directory."""
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join([str(python), *sys.argv])


def write_report(path: Path, table: str, seconds: float) -> None:
    """Write the table with the command, machine and package versions to ``path``.

    Parameters
    ----------
    path : Path
    table : str
        The Markdown table from :func:`format_table`.
    seconds : float
        Wall-clock time of the whole run.
    """
    versions = [f"- python {platform.python_version()}"]
    versions += [f"- {name} {importlib_metadata.version(name)}" for name in PACKAGES]
    versions.append(f"- explainable_model {explainable_model.__version__}")
    text = f"""# SHAP additivity of saved models

Largest |base value + sum(attributions) - model output| over held-out rows, for models saved
with `explainable_model.save_model`, loaded with `explainable_model.load_model` and explained
with `LoadedModel.explain`. The model output is computed from the fitted estimator in the
units the model declares: `predict` for `target`, `predict_proba` for `probability` (the
second class for binary tasks), `decision_function` for `log_odds`, `logit` and `margin`.
"Stored in config" is `config["additivity"]["max_error"]`, which `save_model` measured on
a sample of the training rows.

Exact methods (tree, linear) are checked on every held-out row. Permutation SHAP is checked
on the first {PERMUTATION_ROWS} held-out rows, with {PERMUTATION_BACKGROUND} background rows and
the default 10 feature orderings. Its attributions add up by construction, because along each
sampled ordering the contributions telescope from the base value to the model output, so its
figures check the bookkeeping and not the sampling accuracy.

XGBoost computes its TreeSHAP contributions and margins in float32, so its figures are float32
rounding, about 1e-6 of the output's size (1e-4 on the diabetes target, whose values are in the
hundreds). LightGBM computes in float64.

Credit data models are Pipelines: a median imputer for numeric columns, a most-frequent imputer
and a one-hot encoder for text columns, and a standard scaler for the numeric columns of the
linear, SVM, nearest-neighbor and MLP models. Diabetes and wine models are bare estimators,
except the scale-sensitive ones, which follow a StandardScaler. Forests have 50 trees of depth
up to 8 and run with n_jobs=1. Gradient boosting has 50 stages. Three quarters of each dataset
train the model, and the remaining quarter is held out. "seconds" is the time to fit, save,
load and explain one model.

{table}

Command (from the repository root):

```
{command_line()}
```

Run time: {seconds:.0f} s.

Machine: {os.cpu_count()} cores, {cpu_model()}, {platform.system()} {platform.machine()}.

Versions:

{chr(10).join(versions)}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    """Run every case, print the table and write the report.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        0 when every case ran, 1 when any failed.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown report to write.")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # MLflow logs every input-example validation at INFO level, once per saved model.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # Convergence and feature-name warnings from the models do not bear on additivity.
    warnings.simplefilter("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for dataset in load_datasets():
            for case in cases_for(dataset.task):
                result = run_case(dataset, case, Path(workdir))
                progress = f"{dataset.name:9} {case.family:31} {result.seconds:6.1f} s"
                print(progress, file=sys.stderr, flush=True)
                results.append(result)
    seconds = time.perf_counter() - started

    table = format_table(results)
    print(table)
    write_report(args.output, table, seconds)
    print(f"\nWrote {args.output} in {seconds:.0f} s.")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
