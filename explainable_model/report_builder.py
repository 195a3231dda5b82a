"""Build explanation artifacts for people: importance table, SHAP plots, LIME and force-plot pages, a report.

:func:`report` writes, for a model and a set of rows::

    importance.csv, importance.json   mean |SHAP| per raw feature, with units and explained class
    shap_bar.png, shap_beeswarm.png   shap's bar and beeswarm plots
    force_row_<i>.html                shap's force plot of sample row i (JavaScript inlined)
    lime_row_<i>.html                 the LIME explanation of sample row i
    report.html                       one self-contained page with all of the above

``log_model`` builds the same from the model's stored background sample and logs it under the
run's ``explanations/`` artifacts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explainable_model import output as columns
from explainable_model._version import __version__
from explainable_model.engine import ExplanationEngine
from explainable_model.estimators import MULTICLASS, REGRESSION, final_estimator
from explainable_model.exceptions import InvalidInputError, InvalidParameterError
from explainable_model.features import FeatureSpec
from explainable_model.params import ALL_CLASSES, PREDICTED_CLASS
from explainable_model.report_html import (
    ImportanceRow,
    LimeRow,
    LimeSection,
    ReportContent,
    SampleSection,
    force_page,
    lime_page,
    report_page,
)
from explainable_model.report_plots import bar_png, beeswarm_png, force_plot
from explainable_model.shap_explanation import to_shap_explanation

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
IMPORTANCE_CSV = "importance.csv"
IMPORTANCE_JSON = "importance.json"
# Rows read at a time when the report samples a data file.
_READ_CHUNK_ROWS = 65_536
BAR_PLOT = "shap_bar.png"
BEESWARM_PLOT = "shap_beeswarm.png"

# Names of the attribution units in the report's text and axis labels.
UNIT_TEXT = {
    "target": "target units",
    "probability": "probability",
    "log_odds": "log-odds",
    "logit": "logit (softmax input)",
    "margin": "margin (decision function)",
}


@dataclass(frozen=True)
class ReportOptions:
    """Settings of a report; see :func:`report`."""

    sample_rows: int = 3
    explained_class: str = "auto"
    lime: bool = True
    max_rows: int = 1000
    max_display: int = 15
    seed: int = 0
    title: str | None = None

    def check(self) -> None:
        """Raise :class:`InvalidParameterError` for the first invalid setting."""
        for name in ("sample_rows", "max_rows", "max_display"):
            value = getattr(self, name)
            low = 0 if name == "sample_rows" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidParameterError(f"{name} must be an integer of at least {low}, got {value!r}.")
        if str(self.explained_class).lower() == ALL_CLASSES:
            raise InvalidParameterError(
                "explained_class='all' is not supported by the report, which shows one explained class; "
                "pass 'auto', 'predicted' or a class label, and build one report per class if needed."
            )


@dataclass(frozen=True)
class ReportFiles:
    """The files that :func:`report` wrote.

    Attributes
    ----------
    directory : Path
    report : Path
        The self-contained HTML report.
    importance_csv, importance_json : Path
    bar_plot, beeswarm_plot : Path
        PNG images.
    force_pages, lime_pages : list of Path
        One HTML page per sample row; ``lime_pages`` is empty without LIME.
    """

    directory: Path
    report: Path
    importance_csv: Path
    importance_json: Path
    bar_plot: Path
    beeswarm_plot: Path
    force_pages: list[Path] = field(default_factory=list)
    lime_pages: list[Path] = field(default_factory=list)

    def paths(self) -> list[Path]:
        """Return every file, the report first."""
        fixed = [self.report, self.importance_csv, self.importance_json, self.bar_plot, self.beeswarm_plot]
        return fixed + self.force_pages + self.lime_pages


def report_options(settings: bool | dict[str, Any]) -> ReportOptions:
    """Return the report options of ``log_report``: True for the defaults, or a dict of their fields.

    Raises
    ------
    InvalidParameterError
        If the dict contains a name that is not a field, or a field is invalid.
    """
    if isinstance(settings, bool):
        return ReportOptions()
    if not isinstance(settings, dict):
        raise InvalidParameterError(f"log_report must be True, False or a dict of report settings, got {settings!r}.")
    known = set(ReportOptions.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InvalidParameterError(f"log_report has unknown settings {unknown}; the settings are {sorted(known)}.")
    options = ReportOptions(**settings)
    options.check()
    return options


def unit_text(units: str) -> str:
    """Return how the report names attribution ``units``."""
    return UNIT_TEXT.get(units, units)


def report(
    model: Any,
    data: pd.DataFrame | str | Path,
    output_dir: str | Path,
    sample_rows: int = 3,
    explained_class: str = "auto",
    lime: bool = True,
    max_rows: int = 1000,
    max_display: int = 15,
    seed: int = 0,
    title: str | None = None,
) -> ReportFiles:
    """Write the explanation report and its artifacts for a model and a set of rows.

    Parameters
    ----------
    model : str, Path or LoadedModel
        A model URI (``runs:/``, ``models:/NAME/VERSION``, a path ...) of a model saved by this
        library, or one loaded with :func:`explainable_model.load_model`.
    data : pandas.DataFrame, str or Path
        Rows to explain, or a ``.csv`` or ``.parquet`` file of them. Columns that are not
        features of the model (a target, a key) are ignored.
    output_dir : str or Path
        Folder to write to; created if missing. Files of an earlier report are replaced.
    sample_rows : int
        The first ``sample_rows`` rows of ``data`` get a force plot and a LIME page.
    explained_class : str
        As the ``explained_class`` request parameter: ``"auto"`` (the positive class of a binary
        model, each row's predicted class of a multiclass one), ``"predicted"`` or a class label.
    lime : bool
        Also explain the sample rows with LIME.
    max_rows : int
        Rows for the importance table and plots; a larger ``data`` is sampled with ``seed``.
    max_display : int
        Features shown in the plots; the rest are summed into one line.
    seed : int
        Seed of the row sample, of sampling explainers and of the beeswarm plot's jitter.
    title : str, optional
        Heading of the report; by default it names the model.

    Returns
    -------
    ReportFiles
        The paths of the files written.

    Raises
    ------
    InvalidParameterError
        If a setting is invalid.
    InvalidInputError
        If ``data`` lacks a feature column, has no rows or contains values the model cannot score.
    """
    from explainable_model.flavor import LoadedModel, load_model

    options = ReportOptions(sample_rows, explained_class, lime, max_rows, max_display, seed, title)
    options.check()
    loaded = model if isinstance(model, LoadedModel) else load_model(str(model))
    source = str(model) if not isinstance(model, LoadedModel) else "loaded model"
    rows = read_rows(data, loaded.engine.features, options.max_rows, options.seed, options.sample_rows)
    return build_report(loaded.engine, rows.sample, output_dir, options, source, rows.head, rows.total)


@dataclass(frozen=True)
class DataRows:
    """The rows of a report's data that the report needs.

    Attributes
    ----------
    sample : pandas.DataFrame
        The rows for the table and plots: all rows of a DataFrame, at most ``max_rows`` rows
        of a file.
    head : pandas.DataFrame
        The first rows of the data, which get force plots and LIME pages.
    total : int
        The number of rows in the data.
    """

    sample: pd.DataFrame
    head: pd.DataFrame
    total: int


def read_rows(
    data: pd.DataFrame | str | Path,
    features: list[FeatureSpec],
    max_rows: int | None = None,
    seed: int = 0,
    head_rows: int = 0,
) -> DataRows:
    """Return the feature columns of ``data``, read from a CSV or Parquet file when it is a path.

    A file is read in chunks of :data:`_READ_CHUNK_ROWS` rows. With ``max_rows``, only the rows
    that :func:`sample_positions` picks and the first ``head_rows`` rows are kept, so memory
    does not grow with the file.

    Raises
    ------
    InvalidInputError
        If the file is missing, of another type or unreadable, a feature column is missing, or
        there are no rows.
    """
    if isinstance(data, (str, Path)):
        return _read_file(Path(data), features, max_rows, seed, head_rows)
    feature_names = [spec.name for spec in features]
    if not isinstance(data, pd.DataFrame):
        raise InvalidInputError(f"data must be a pandas DataFrame or a file path, got {type(data).__name__}.")
    frame = data.rename(columns=str)
    _check_feature_columns(list(frame.columns), feature_names)
    if frame.empty:
        raise InvalidInputError("data has no rows; the report needs at least one row to explain.")
    frame = frame[feature_names].reset_index(drop=True)
    return DataRows(frame, frame.iloc[:head_rows], len(frame))


def sample_positions(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    """Return the sorted positions of ``max_rows`` of ``n_rows`` rows, drawn uniformly without replacement.

    Each row gets a uniform random key from a generator seeded with ``seed``, in row order,
    and the rows with the smallest keys are kept. A file read in chunks draws the same keys,
    so it keeps the same rows as the whole frame would.
    """
    keys = np.random.default_rng(seed).random(n_rows)
    if n_rows <= max_rows:
        return np.arange(n_rows)
    return np.sort(np.argpartition(keys, max_rows - 1)[:max_rows])


def _check_feature_columns(columns: list[str], feature_names: list[str]) -> None:
    missing = [name for name in feature_names if name not in columns]
    if missing:
        raise InvalidInputError(f"data lacks the feature columns {missing}; the model needs {feature_names}.")
    ignored = [name for name in columns if name not in feature_names]
    if ignored:
        logger.info("Ignoring columns that are not model features: %s", ignored)


def _read_file(
    path: Path, features: list[FeatureSpec], max_rows: int | None, seed: int, head_rows: int
) -> DataRows:
    """Read the rows of ``read_rows`` from a file, chunk by chunk, keeping those with the smallest keys."""
    from explainable_model.batch import INPUT_SUFFIXES, BatchInputError, iter_chunks, typed_chunk

    feature_names = [spec.name for spec in features]
    if not path.is_file():
        raise InvalidInputError(f"Data file {str(path)!r} does not exist; pass a .csv or .parquet file.")
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise InvalidInputError(f"Data file {str(path)!r} is neither .csv nor .parquet; convert it.")
    rng = np.random.default_rng(seed)
    sample: pd.DataFrame | None = None
    sample_keys = np.empty(0)
    head: list[pd.DataFrame] = []
    total = 0
    try:
        for table in iter_chunks(path, _READ_CHUNK_ROWS, features):
            if sample is None:
                _check_feature_columns(table.column_names, feature_names)
            frame = typed_chunk(table.select(feature_names), features)
            frame.index = pd.RangeIndex(total, total + len(frame))
            if total < head_rows:
                head.append(frame.iloc[: head_rows - total])
            keys = rng.random(len(frame))
            total += len(frame)
            if sample is not None:
                frame = pd.concat([sample, frame])
                keys = np.concatenate([sample_keys, keys])
            if max_rows is not None and len(frame) > max_rows:
                best = np.argpartition(keys, max_rows - 1)[:max_rows]
                frame, keys = frame.iloc[best], keys[best]
            sample, sample_keys = frame, keys
    except BatchInputError as error:
        raise InvalidInputError(f"Data file {str(path)!r} could not be read: {error.reason}") from error
    if sample is None or total == 0:
        raise InvalidInputError("data has no rows; the report needs at least one row to explain.")
    if max_rows is not None and total > max_rows:
        logger.info("Read a sample of %d of %d rows of %s (max_rows).", len(sample), total, path)
    first = pd.concat(head).reset_index(drop=True) if head else sample.iloc[:0]
    return DataRows(sample.sort_index().reset_index(drop=True), first, total)


@dataclass(frozen=True)
class _Explained:
    """The class that the attributions explain, as a phrase for people and as values for the tables."""

    text: str
    label: str | None
    rows_per_class: dict[str, int] | None


def _explained(engine: ExplanationEngine, scored: pd.DataFrame) -> _Explained:
    if engine.task == REGRESSION:
        return _Explained("the regression output", None, None)
    labels = scored[columns.EXPLAINED_CLASS].astype(str)
    counts = {str(label): int(count) for label, count in labels.value_counts().sort_index().items()}
    if len(counts) == 1:
        return _Explained(f"class {labels.iloc[0]!r}", labels.iloc[0], counts)
    listed = ", ".join(f"{label!r}: {count}" for label, count in counts.items())
    return _Explained(f"each row's predicted class (rows per class: {listed})", PREDICTED_CLASS, counts)


def _importance(explanation: Any) -> list[ImportanceRow]:
    values = np.asarray(explanation.values, dtype="float64")
    mean_abs = np.abs(values).mean(axis=0)
    mean = values.mean(axis=0)
    # A stable sort keeps the model's feature order among equal importances.
    order = np.argsort(-mean_abs, kind="stable")
    return [ImportanceRow(explanation.feature_names[f], float(mean_abs[f]), float(mean[f])) for f in order]


def _write_importance(
    directory: Path, rows: list[ImportanceRow], units: str, explained: _Explained, n_rows: int, source: str
) -> tuple[Path, Path]:
    # explained_class is the class label, "predicted" when rows explain their own predicted
    # class, or empty for regressors.
    table = pd.DataFrame(
        {
            "rank": range(1, len(rows) + 1),
            "feature": [row.feature for row in rows],
            "mean_abs_shap": [row.mean_abs for row in rows],
            "mean_shap": [row.mean for row in rows],
            "units": units,
            "explained_class": explained.label,
        }
    )
    csv_path = directory / IMPORTANCE_CSV
    table.to_csv(csv_path, index=False)
    document = {
        "model": source,
        "units": units,
        "explained_class": explained.label,
        "rows_per_class": explained.rows_per_class,
        "rows": n_rows,
        "features": [
            {"rank": rank, "feature": row.feature, "mean_abs_shap": row.mean_abs, "mean_shap": row.mean}
            for rank, row in enumerate(rows, start=1)
        ],
    }
    json_path = directory / IMPORTANCE_JSON
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    return csv_path, json_path


def _value_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _lime_section(engine: ExplanationEngine, scored: pd.Series, values: np.ndarray, names: list[str]) -> LimeSection:
    if engine.task == REGRESSION:
        target = "prediction"
        model_value = float(scored[columns.PREDICTION])
    else:
        label = scored[columns.EXPLAINED_CLASS]
        target = f"probability of class {label!r}"
        model_value = float(scored[columns.column_name(columns.PROBABILITY, class_label=label)])
    weights = [
        (name, _value_text(value), float(scored[columns.column_name(columns.LIME, name)]))
        for name, value in zip(names, values, strict=True)
    ]
    selected = sorted((row for row in weights if row[2] != 0.0), key=lambda row: -abs(row[2]))
    return LimeSection(
        target=target,
        model_value=model_value,
        intercept=float(scored[columns.LIME_INTERCEPT]),
        local_prediction=float(scored[columns.LIME_LOCAL_PREDICTION]),
        score=float(scored[columns.LIME_SCORE]),
        rows=[LimeRow(*row) for row in selected],
    )


def _samples(
    engine: ExplanationEngine, frame: pd.DataFrame, options: ReportOptions, units: str, directory: Path
) -> tuple[list[SampleSection], list[Path], list[Path]]:
    rows = frame.iloc[: options.sample_rows]
    if rows.empty:
        return [], [], []
    use_lime = options.lime and engine.lime_explainer is not None
    if options.lime and not use_lime:
        logger.warning("The model was saved without LIME state, so the report has no LIME pages.")
    params = {
        "explainers": "shap,lime" if use_lime else "shap",
        "explained_class": options.explained_class,
        "seed": options.seed,
    }
    scored = engine.predict(rows, params)
    explanation = to_shap_explanation(scored, rows)
    names = list(explanation.feature_names)
    sections, force_paths, lime_paths = [], [], []
    for i in range(len(rows)):
        line = scored.iloc[i]
        target = "" if engine.task == REGRESSION else f" of class {line[columns.EXPLAINED_CLASS]!r}"
        # shap prints the output name beside the row's output value, where a short name fits.
        output_name = unit_text(units) if engine.task == REGRESSION else f"{units} ({line[columns.EXPLAINED_CLASS]})"
        base = float(explanation.base_values[i])
        total = base + float(np.sum(explanation.values[i]))
        description = (
            f"Prediction {line[columns.PREDICTION]!r}. SHAP explains the {unit_text(units)}{target}: "
            f"base value {base:.4g} + attributions = {total:.4g}."
        )
        title = f"Row {i}"
        plot = force_plot(base, explanation.values[i], explanation.data[i], names, output_name)
        force_path = directory / f"force_row_{i}.html"
        force_path.write_text(force_page(f"SHAP force plot, row {i}", description, plot.html()), encoding="utf-8")
        force_paths.append(force_path)
        lime = None
        lime_name = None
        if use_lime:
            lime = _lime_section(engine, line, explanation.data[i], names)
            lime_path = directory / f"lime_row_{i}.html"
            lime_path.write_text(lime_page(f"LIME explanation, row {i}", lime), encoding="utf-8")
            lime_paths.append(lime_path)
            lime_name = lime_path.name
        sections.append(SampleSection(title, description, plot.html(), force_path.name, lime, lime_name))
    return sections, force_paths, lime_paths


def _describe_estimator(engine: ExplanationEngine) -> str:
    outer = type(engine.estimator).__name__
    inner = type(final_estimator(engine.estimator)).__name__
    return outer if outer == inner else f"{outer} ending in {inner}"


def build_report(
    engine: ExplanationEngine,
    data: pd.DataFrame,
    output_dir: str | Path,
    options: ReportOptions,
    source: str,
    head: pd.DataFrame | None = None,
    total_rows: int | None = None,
) -> ReportFiles:
    """Write the report for ``engine`` on ``data`` into ``output_dir``; :func:`report` documents the files.

    ``data`` contains exactly the model's feature columns. When ``data`` is already a sample of
    larger data, ``head`` contains the first rows of that data, for the force plots and LIME pages,
    and ``total_rows`` its number of rows.
    """
    options.check()
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)

    frame = data
    if len(data) > options.max_rows:
        frame = data.iloc[sample_positions(len(data), options.max_rows, options.seed)].reset_index(drop=True)
        logger.info("Explaining a sample of %d of %d rows (max_rows).", options.max_rows, len(data))
    params = {"explainers": "shap", "explained_class": options.explained_class, "seed": options.seed}
    scored = engine.predict(frame, params)
    explanation = to_shap_explanation(scored, frame)
    units = engine.units
    explained = _explained(engine, scored)
    importance = _importance(explanation)
    csv_path, json_path = _write_importance(directory, importance, units, explained, len(frame), source)

    axis = unit_text(units)
    if explained.label == PREDICTED_CLASS:
        subject = "explaining each row's predicted class"
    else:
        subject = f"explaining {explained.text}"
    bar_path = directory / BAR_PLOT
    bar_title = f"Global importance, {subject}"
    bar_path.write_bytes(bar_png(explanation, f"mean |SHAP value| ({axis})", bar_title, options.max_display))
    beeswarm_path = directory / BEESWARM_PLOT
    beeswarm_title = f"Attributions per row, {subject}"
    beeswarm_path.write_bytes(
        beeswarm_png(explanation, f"SHAP value ({axis})", beeswarm_title, options.max_display, options.seed)
    )

    first_rows = data if head is None else head
    samples, force_paths, lime_paths = _samples(engine, first_rows, options, units, directory)

    summary = [
        ("Model", source),
        ("Estimator", _describe_estimator(engine)),
        ("Task", engine.task + (f" ({len(engine.classes or [])} classes)" if engine.task == MULTICLASS else "")),
        ("SHAP method", f"{engine.explainer.method} ({'exact' if engine.explainer.exact else 'sampled'})"),
        ("Attribution units", f"{units}: {axis}"),
        ("Explained class", explained.text),
        ("Rows explained", f"{len(frame)} of {len(data) if total_rows is None else total_rows}"),
        ("Software", f"explainable_model {__version__}, shap {importlib_metadata.version('shap')}"),
    ]
    report_path = directory / REPORT_FILE
    files = [path.name for path in [csv_path, json_path, bar_path, beeswarm_path, *force_paths, *lime_paths]]
    content = ReportContent(
        title=options.title or f"Explanations: {source}",
        summary=summary,
        units_text=axis,
        explained_text=explained.text,
        importance=importance,
        bar_png=bar_path.read_bytes(),
        beeswarm_png=beeswarm_path.read_bytes(),
        samples=samples,
        files=files,
    )
    report_path.write_text(report_page(content), encoding="utf-8")
    logger.info("Wrote the explanation report to %s", report_path)
    return ReportFiles(directory, report_path, csv_path, json_path, bar_path, beeswarm_path, force_paths, lime_paths)
