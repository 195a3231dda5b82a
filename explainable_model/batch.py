"""Score CSV and Parquet files in chunks, writing Parquet parts that a rerun can resume.

The input is read with pyarrow in chunks of ``chunk_size`` rows, so memory follows the chunk
size and not the input size. Each chunk is scored with :meth:`LoadedModel.predict` and written
as one Parquet part, ``part-00000.parquet`` and so on, holding the input's columns followed by
the model's output columns. A part is written under a temporary name and renamed, then
``_manifest.json`` is replaced the same way; it records the model URI, the parameters, the
chunk size and, per input file, the chunks done and the rows in each part. A rerun with the
same arguments skips the chunks that the manifest records, so a run killed at any point ends
with every input row exactly once.

Rows are numbered from 0 within each input file, not counting a CSV header.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException

from explainable_model.exceptions import ExplainableModelError, InvalidInputError
from explainable_model.features import BOOLEAN, NUMERIC, FeatureSpec, coerce_frame

logger = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
REJECTS_DIR = "_rejects"
MANIFEST_VERSION = 1
INPUT_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_PART_PATTERN = re.compile(r"^part-\d{5,}\.parquet$")
_TMP_SUFFIX = ".tmp"
# pyarrow's CSV reader parses this many bytes at a time; chunks are cut from its batches.
_CSV_BLOCK_BYTES = 4 << 20
# Parquet column chunks are read through a buffer of this many bytes, page by page. Without
# it pyarrow reads whole row groups, and pandas writes up to 1,048,576 rows in one. For a
# 3,000,000-row file of 30 float64 columns read in batches of 100,000 rows, pyarrow's pool
# then peaked at 840 MiB, against 150 MiB with this buffer (pyarrow 25).
_PARQUET_BUFFER_BYTES = 1 << 20


class BatchError(ExplainableModelError):
    """A batch run that cannot start or go on: bad arguments, output folder or manifest."""


class BatchInputError(BatchError):
    """An input row or file that cannot be scored.

    Attributes
    ----------
    file : str
        The input file.
    row : int or None
        Row number in that file, counted from 0 without the CSV header; None for a file-level problem.
    column : str or None
        The column at fault, when known.
    reason : str
        What is wrong, as the model or reader reported it.
    """

    def __init__(self, file: str, row: int | None, column: str | None, reason: str) -> None:
        self._arguments = (file, row, column, reason)
        self.file, self.row, self.column, self.reason = file, row, column, reason
        where = f"{file}" + (f", row {row}" if row is not None else "") + (f", column {column!r}" if column else "")
        # --rejects sets bad rows aside; a problem of the whole file needs the file fixed.
        remedy = (
            "Fix the input, or pass --rejects PATH (rejects= in Python) to write bad rows there and go on"
            if row is not None
            else "Fix the file"
        )
        super().__init__(
            f"Cannot score {where}: {reason} {remedy}; rerun the same command to resume after the completed parts."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its four fields when a worker process sends it back.
        return (type(self), self._arguments)


@dataclass
class BatchSummary:
    """What a run did.

    Attributes
    ----------
    rows : int
        Rows scored and written, including those of parts from an earlier, resumed run.
    rejected : int
        Rows written to the rejects file.
    seconds : float
        Wall time of this run.
    rows_this_run : int
        Rows scored by this run; ``rows_per_second`` is based on them.
    output : str
        The output folder.
    parts : list of str
        Part files, in input order.
    rejects : str or None
        The rejects file, when one was asked for.
    """

    rows: int
    rejected: int
    seconds: float
    rows_this_run: int
    output: str
    parts: list[str] = field(default_factory=list)
    rejects: str | None = None

    @property
    def rows_per_second(self) -> float:
        """Rows scored per second by this run."""
        return self.rows_this_run / self.seconds if self.seconds > 0 else math.nan


# --------------------------------------------------------------------------- input files


def list_inputs(input_path: str | Path) -> list[Path]:
    """Return the CSV and Parquet files to score: ``input_path`` itself or its files sorted by name.

    Raises
    ------
    BatchError
        If the path does not exist, is not a CSV or Parquet file, or is a folder without any.
    """
    path = Path(input_path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
        if not files:
            raise BatchError(f"Input folder {str(path)!r} contains no .csv or .parquet files.")
        return files
    if not path.exists():
        raise BatchError(f"Input {str(path)!r} does not exist; pass a CSV or Parquet file or a folder of them.")
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise BatchError(f"Input {str(path)!r} is neither .csv nor .parquet; rename it or convert it.")
    return [path]


def known_rows(path: Path) -> int | None:
    """Return the rows of a Parquet file from its metadata, or None for CSV."""
    if INPUT_SUFFIXES[path.suffix.lower()] == "parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def _csv_batches(path: Path, features: list[FeatureSpec]) -> Iterator[pa.RecordBatch]:
    # Feature columns are read as text so that one bad value cannot stop the reader; they are
    # cast per chunk by typed_chunk. Other columns (keys) keep pyarrow's inferred types.
    convert = pacsv.ConvertOptions(
        column_types={spec.name: pa.string() for spec in features},
        strings_can_be_null=True,
    )
    try:
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES), convert_options=convert
        )
        yield from reader
    except pa.ArrowInvalid as error:
        raise BatchInputError(str(path), None, None, f"pyarrow could not read the CSV file ({error}).") from error


def _parquet_batches(path: Path, chunk_size: int) -> Iterator[pa.RecordBatch]:
    try:
        parquet = pq.ParquetFile(path, buffer_size=_PARQUET_BUFFER_BYTES, pre_buffer=False)
        yield from parquet.iter_batches(batch_size=chunk_size)
    except (pa.ArrowInvalid, OSError) as error:
        raise BatchInputError(str(path), None, None, f"pyarrow could not read the Parquet file ({error}).") from error


def iter_chunks(path: Path, chunk_size: int, features: list[FeatureSpec]) -> Iterator[pa.Table]:
    """Yield tables of exactly ``chunk_size`` rows (the last may be shorter) from one file.

    Chunk boundaries depend only on the file and ``chunk_size``, so a resumed run cuts the same
    chunks.
    """
    if INPUT_SUFFIXES[path.suffix.lower()] == "csv":
        batches = _csv_batches(path, features)
    else:
        batches = _parquet_batches(path, chunk_size)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows < chunk_size:
            continue
        table = pa.Table.from_batches(pending)
        offset = 0
        while pending_rows - offset >= chunk_size:
            yield table.slice(offset, chunk_size)
            offset += chunk_size
        rest = table.slice(offset)
        pending = rest.to_batches() if rest.num_rows else []
        pending_rows = rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending)


def _cast_text(column: pa.ChunkedArray, spec: FeatureSpec) -> pa.ChunkedArray | None:
    """Cast a text column read from CSV to the feature's type, or return None if a value does not fit."""
    if spec.kind == BOOLEAN:
        targets = [pa.bool_()]
    elif spec.dtype == "int64":
        targets = [pa.int64(), pa.float64()]
    else:
        targets = [pa.float64()]
    for target in targets:
        try:
            return pc.cast(pc.utf8_trim_whitespace(column), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return None


def typed_chunk(table: pa.Table, features: list[FeatureSpec]) -> pd.DataFrame:
    """Convert a chunk to pandas, casting numeric and boolean features read as CSV text."""
    for spec in features:
        if spec.kind not in (NUMERIC, BOOLEAN) or spec.name not in table.column_names:
            continue
        column = table.column(spec.name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        cast = _cast_text(column, spec)
        if cast is not None:
            table = table.set_column(table.column_names.index(spec.name), spec.name, cast)
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(len(frame))
    return frame


# --------------------------------------------------------------------------- scoring

_MODEL: Any = None


def _init_worker(model_uri: str, single_thread: bool) -> None:
    """Load the model once per process."""
    global _MODEL
    if single_thread:
        os.environ["EXPLAINABLE_MODEL_N_JOBS"] = "1"
    from explainable_model.flavor import load_model

    _MODEL = load_model(model_uri)


def _is_bad_input(error: Exception) -> bool:
    # MLflow's schema enforcement, which runs before the model's own checks, raises a plain
    # MlflowException for text in a numeric column.
    return isinstance(error, InvalidInputError) or (
        isinstance(error, MlflowException) and "Failed to enforce schema" in str(error)
    )


_COLUMN_IN_MESSAGE = re.compile(r"[Cc]olumn '([^']+)'|for column (\S+?)\.\s|convert column (\S+) from")


def _reason_of(error: Exception) -> tuple[str | None, str]:
    """Return the column named by a single-row error and its message without the data dump."""
    message = str(error)
    if "Error: " in message and "Failed to enforce schema" in message:
        message = message.rsplit("Error: ", 1)[1]
    # NOTE: an unknown category found by the estimator's encoder is reported without a column,
    # because scikit-learn names it by position ("column 0") in the encoder's input.
    match = _COLUMN_IN_MESSAGE.search(message)
    column = next((group for group in match.groups() if group), None) if match else None
    # The model counts rows within the one-row frame it was sent; the caller names the file's row.
    message = re.sub(r" at row 0\b| row 0 ", " ", message).strip()
    return column, message


def _predict(model: Any, frame: pd.DataFrame, params: dict[str, Any] | None) -> pd.DataFrame:
    features = model.engine.features
    inputs = frame[[spec.name for spec in features]]
    # coerce_frame converts numeric text (CSV) and reports a bad value with its column and row.
    return model.predict(coerce_frame(inputs, features), params)


def _score_rows(
    model: Any,
    frame: pd.DataFrame,
    params: dict[str, Any] | None,
    positions: range,
    bad: list[tuple[int, str | None, str]],
) -> list[pd.DataFrame]:
    """Score ``frame`` rows at ``positions``, splitting in halves around bad rows."""
    part = frame.iloc[positions.start : positions.stop]
    try:
        return [_predict(model, part, params)]
    except Exception as error:
        if not _is_bad_input(error):
            raise
        if len(positions) == 1:
            column, reason = _reason_of(error)
            bad.append((positions.start, column, reason))
            return []
    middle = positions.start + len(positions) // 2
    left = _score_rows(model, frame, params, range(positions.start, middle), bad)
    return left + _score_rows(model, frame, params, range(middle, positions.stop), bad)


@dataclass
class ChunkResult:
    """A scored chunk: output rows (input columns then model columns) and rejected rows."""

    output: pd.DataFrame | None
    rejects: pd.DataFrame | None
    rows: int


def score_chunk(
    frame: pd.DataFrame,
    params: dict[str, Any] | None,
    file: str,
    first_row: int,
    keep_going: bool,
    model: Any = None,
) -> ChunkResult:
    """Score one chunk with the process's model, finding bad rows only when the chunk fails.

    Parameters
    ----------
    frame : pandas.DataFrame
        The chunk, with all input columns.
    params : dict, optional
        Request parameters for ``predict``.
    file : str
        Input file, for messages.
    first_row : int
        Row number of the chunk's first row in ``file``.
    keep_going : bool
        Return bad rows as rejects instead of raising.
    model : LoadedModel, optional
        The model; by default the one that this process loaded.

    Raises
    ------
    BatchInputError
        If a row cannot be scored and ``keep_going`` is false.
    """
    model = model if model is not None else _MODEL
    try:
        outputs = [_predict(model, frame, params)]
        bad: list[tuple[int, str | None, str]] = []
    except Exception as error:
        if not _is_bad_input(error):
            raise
        bad = []
        outputs = _score_rows(model, frame, params, range(len(frame)), bad)
        if not bad:
            # The chunk fails as a whole while no row fails alone, so the chunk is reported.
            column, reason = _reason_of(error)
            raise BatchInputError(file, first_row, column, reason) from error
        if not keep_going:
            position, column, reason = bad[0]
            raise BatchInputError(file, first_row + position, column, reason) from error
    good = frame
    rejects = None
    if bad:
        positions = [position for position, _, _ in bad]
        good = frame.drop(index=positions)
        rejects = frame.iloc[positions].astype("string").astype(object)
        rejects.insert(0, "_reason", [reason for _, _, reason in bad])
        rejects.insert(0, "_column", [column for _, column, _ in bad])
        rejects.insert(0, "_row", [first_row + position for position in positions])
        rejects.insert(0, "_file", file)
        rejects = rejects.reset_index(drop=True)
        # Columns kept as text because of the bad rows get their numbers back.
        for name in good.columns:
            if good[name].dtype == object:
                try:
                    good = good.assign(**{name: pd.to_numeric(good[name])})
                except (ValueError, TypeError):
                    pass
    if not len(good):
        return ChunkResult(None, rejects, 0)
    predictions = pd.concat(outputs, ignore_index=True)
    clash = sorted(set(good.columns) & set(predictions.columns))
    if clash:
        raise BatchError(
            f"Input file {file} has columns named like model output columns ({', '.join(clash)}); rename them."
        )
    output = pd.concat([good.reset_index(drop=True), predictions], axis=1)
    return ChunkResult(output, rejects, len(output))


def _score_in_worker(
    frame: pd.DataFrame, params: dict[str, Any] | None, file: str, first_row: int, keep_going: bool
) -> ChunkResult:
    return score_chunk(frame, params, file, first_row, keep_going)


# --------------------------------------------------------------------------- output and manifest


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    os.replace(tmp, path)


def _new_manifest(model_uri: str, params: dict[str, Any] | None, chunk_size: int, files: list[Path]) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION,
        "model_uri": model_uri,
        "params": params or {},
        "chunk_size": chunk_size,
        "inputs": [str(path.resolve()) for path in files],
        "files": {str(path.resolve()): {"chunks": {}, "complete": False} for path in files},
        "next_part": 0,
        "next_rejects": 0,
    }


def _check_resumable(old: dict[str, Any], new: dict[str, Any], output: Path) -> None:
    for key, label in (
        ("model_uri", "model URI"),
        ("params", "parameters"),
        ("chunk_size", "chunk size"),
        ("inputs", "input files"),
    ):
        if old.get(key) != new[key]:
            raise BatchError(
                f"Output folder {str(output)!r} contains a run with different {label} ({old.get(key)!r}, now "
                f"{new[key]!r}). Resuming would mix results: rerun with the same arguments, pass --no-resume "
                "to start over, or choose another output folder."
            )


def _clean_output(output: Path, manifest: dict[str, Any] | None) -> None:
    """Remove temporary files and parts that the manifest does not record (left by a killed run)."""
    recorded: set[str] = set()
    if manifest:
        for state in manifest["files"].values():
            for chunk in state["chunks"].values():
                recorded.update(name for name in (chunk.get("part"), chunk.get("rejects")) if name)
    for path in list(output.iterdir()) + (
        list((output / REJECTS_DIR).iterdir()) if (output / REJECTS_DIR).is_dir() else []
    ):
        relative = path.relative_to(output).as_posix()
        orphan_part = (_PART_PATTERN.match(path.name) or path.parent.name == REJECTS_DIR) and relative not in recorded
        if path.is_file() and (path.name.endswith(_TMP_SUFFIX) or orphan_part):
            logger.info("Removing %s, left by an interrupted run.", path)
            path.unlink()


def _prepare_output(output: Path, fresh: dict[str, Any], resume: bool) -> dict[str, Any]:
    output.mkdir(parents=True, exist_ok=True)
    manifest_path = output / MANIFEST_NAME
    manifest: dict[str, Any] | None = None
    if manifest_path.exists():
        if resume:
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise BatchError(
                    f"{manifest_path} is not valid JSON ({error}); pass --no-resume to start over."
                ) from error
            assert manifest is not None
            _check_resumable(manifest, fresh, output)
        else:
            manifest_path.unlink()
    elif resume and any(_PART_PATTERN.match(p.name) for p in output.iterdir()):
        raise BatchError(
            f"Output folder {str(output)!r} contains part files but no {MANIFEST_NAME}, so they cannot be resumed; "
            "pass --no-resume to replace them or choose another output folder."
        )
    _clean_output(output, manifest)
    if manifest is None:
        manifest = fresh
        _write_json_atomic(manifest_path, manifest)
    return manifest


def _combine_rejects(output: Path, manifest: dict[str, Any], rejects: Path) -> int:
    """Write every chunk's rejected rows to ``rejects`` (Parquet, or CSV for a .csv name)."""
    frames = [
        pd.read_parquet(output / chunk["rejects"])
        for path in manifest["inputs"]
        for _, chunk in sorted(manifest["files"][path]["chunks"].items(), key=lambda item: int(item[0]))
        if chunk.get("rejects")
    ]
    table = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["_file", "_row", "_column", "_reason"])
    )
    rejects.parent.mkdir(parents=True, exist_ok=True)
    tmp = rejects.with_name(rejects.name + _TMP_SUFFIX)
    if rejects.suffix.lower() == ".csv":
        table.to_csv(tmp, index=False)
    else:
        table.to_parquet(tmp, index=False)
    os.replace(tmp, rejects)
    return len(table)


# --------------------------------------------------------------------------- the run


class _Progress:
    """A tqdm bar on a terminal, log lines otherwise."""

    def __init__(self, total: int | None, enabled: bool | None) -> None:
        self.bar = None
        self.rows = 0  # scored and rejected rows of this run
        self.rejected = 0
        self.total = total
        self.started = time.monotonic()
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="rows", unit_scale=True, dynamic_ncols=True)

    def update(self, scored: int, rejected: int, file: str, chunk: int) -> None:
        self.rows += scored + rejected
        self.rejected += rejected
        if self.bar is not None:
            self.bar.update(scored + rejected)
            return
        elapsed = time.monotonic() - self.started
        rate = self.rows / elapsed if elapsed > 0 else math.nan
        left = ""
        if self.total:
            left = f", {max(self.total - self.rows, 0) / rate:.0f} s left" if rate > 0 else ""
        logger.info(
            "%s chunk %d done; %d rows scored so far, %d rejected, %.0f rows/s%s",
            Path(file).name,
            chunk,
            self.rows - self.rejected,
            self.rejected,
            rate,
            left,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def score_files(
    model_uri: str,
    input_path: str | Path,
    output: str | Path,
    chunk_size: int = 10_000,
    params: dict[str, Any] | None = None,
    workers: int = 1,
    rejects: str | Path | None = None,
    resume: bool = True,
    progress: bool | None = None,
    on_part: Callable[[Path], None] | None = None,
) -> BatchSummary:
    """Score CSV or Parquet files in chunks and write Parquet parts plus ``_manifest.json``.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI of a model saved by this library, or a local model folder.
    input_path : str or Path
        A ``.csv`` or ``.parquet`` file, or a folder whose such files are scored in name order.
    output : str or Path
        Folder for ``part-NNNNN.parquet`` files (input columns, then model output columns) and
        ``_manifest.json``; created if needed.
    chunk_size : int
        Rows per chunk and per part.
    params : dict, optional
        Request parameters passed to ``predict`` (``explainers``, ``top_k``...).
    workers : int
        Processes that score chunks; each loads the model once and runs single-threaded
        (``EXPLAINABLE_MODEL_N_JOBS=1``) when there are several. Parts are written in order.
    rejects : str or Path, optional
        Write rows that cannot be scored, with their values and the reason, to this Parquet
        (or ``.csv``) file and go on, instead of stopping at the first.
    resume : bool
        Skip the chunks that the output's manifest records as done. False starts over,
        replacing the output's parts.
    progress : bool, optional
        Show a progress bar; by default when standard error is a terminal, else log lines.
    on_part : callable, optional
        Called with each part's path once it and the manifest are written.

    Returns
    -------
    BatchSummary

    Raises
    ------
    BatchInputError
        If a file or row cannot be scored and ``rejects`` is not given; parts written so far stay.
    BatchError
        If the arguments, input or output folder do not allow the run, or resuming would mix runs.
    InvalidParameterError
        If ``params`` are not valid for the model.
    """
    started = time.monotonic()
    if chunk_size < 1:
        raise BatchError(f"Chunk size must be a positive number of rows, got {chunk_size}.")
    if workers < 1:
        raise BatchError(f"Workers must be at least 1, got {workers}.")
    files = list_inputs(input_path)
    output = Path(output)
    rejects_path = Path(rejects) if rejects is not None else None
    from explainable_model.flavor import load_model

    model = load_model(model_uri)
    model.engine.options(params, strict=True)  # reject bad parameters before any output is written
    features: list[FeatureSpec] = model.engine.features
    manifest = _prepare_output(output, _new_manifest(model_uri, params, chunk_size, files), resume)
    manifest_path = output / MANIFEST_NAME
    if rejects_path is not None:
        (output / REJECTS_DIR).mkdir(exist_ok=True)

    totals = [known_rows(path) for path in files]
    total = sum(t for t in totals if t is not None) if all(t is not None for t in totals) else None
    done_rows = sum(
        chunk["rows"] + chunk.get("rejected", 0)
        for state in manifest["files"].values()
        for chunk in state["chunks"].values()
    )
    bar = _Progress(total, progress)
    if done_rows:
        logger.info("Resuming: %d rows already scored in %s.", done_rows, output)
        if bar.bar is not None:
            bar.bar.update(done_rows)
    keep_going = rejects_path is not None
    executor: ProcessPoolExecutor | None = None
    if workers > 1:
        executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(model_uri, True)
        )
    rows_this_run = 0

    def commit(state: dict[str, Any], index: int, file: str, first_row: int, result: ChunkResult) -> None:
        nonlocal rows_this_run
        entry: dict[str, Any] = {"rows": result.rows, "first_row": first_row, "part": None}
        if result.output is not None:
            name = f"part-{manifest['next_part']:05d}.parquet"
            _write_parquet_atomic(output / name, result.output)
            manifest["next_part"] += 1
            entry["part"] = name
        if result.rejects is not None:
            name = f"{REJECTS_DIR}/rejects-{manifest['next_rejects']:05d}.parquet"
            _write_parquet_atomic(output / name, result.rejects)
            manifest["next_rejects"] += 1
            entry["rejects"] = name
            entry["rejected"] = len(result.rejects)
        state["chunks"][str(index)] = entry
        _write_json_atomic(manifest_path, manifest)
        rows_this_run += result.rows
        bar.update(result.rows, entry.get("rejected", 0), file, index)
        if on_part is not None and entry["part"]:
            on_part(output / entry["part"])

    try:
        for path in files:
            file = str(path.resolve())
            state = manifest["files"][file]
            if state["complete"]:
                continue
            pending: list[tuple[int, int, Future[ChunkResult]]] = []
            first_row = 0
            for index, table in enumerate(iter_chunks(path, chunk_size, features)):
                rows, start = table.num_rows, first_row
                first_row += rows
                if str(index) in state["chunks"]:
                    continue
                missing = [spec.name for spec in features if spec.name not in table.column_names]
                if missing:
                    raise BatchInputError(str(path), None, None, f"the model's feature columns {missing} are missing.")
                frame = typed_chunk(table, features)
                if executor is None:
                    commit(
                        state, index, str(path), start, score_chunk(frame, params, str(path), start, keep_going, model)
                    )
                    continue
                pending.append(
                    (index, start, executor.submit(_score_in_worker, frame, params, str(path), start, keep_going))
                )
                # Keep a bounded window of chunks in flight, so memory follows chunk size × workers.
                while len(pending) > 2 * workers or (pending and pending[0][2].done()):
                    done_index, done_start, future = pending.pop(0)
                    commit(state, done_index, str(path), done_start, future.result())
            for done_index, done_start, future in pending:
                commit(state, done_index, str(path), done_start, future.result())
            state["complete"] = True
            _write_json_atomic(manifest_path, manifest)
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    rejected = 0
    if rejects_path is not None:
        rejected = _combine_rejects(output, manifest, rejects_path)
    parts = [
        str(output / chunk["part"])
        for path in manifest["inputs"]
        for _, chunk in sorted(manifest["files"][path]["chunks"].items(), key=lambda item: int(item[0]))
        if chunk.get("part")
    ]
    rows = sum(chunk["rows"] for state in manifest["files"].values() for chunk in state["chunks"].values())
    return BatchSummary(
        rows=rows,
        rejected=rejected,
        seconds=time.monotonic() - started,
        rows_this_run=rows_this_run,
        output=str(output),
        parts=parts,
        rejects=str(rejects_path) if rejects_path is not None else None,
    )
