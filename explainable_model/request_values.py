"""Checks of JSON request values that MLflow's request parsing would change without an error.

MLflow's scoring server (mlflow 3.17) reads a JSON request into a DataFrame with the
signature's types before the model receives it. That reading truncates a number with a fraction
in a ``long`` column (33.75 becomes 33). It turns a JSON object or list in a ``string`` column
into its text. Either way, the model would score a value that the client did not send.
:func:`check_json_values` reads the request body itself and rejects such values, with the
message that the model's ``predict`` gives for the same value in a DataFrame.

Only the layouts that name their columns are read: ``dataframe_split`` with ``columns``,
``dataframe_records``, and ``instances`` or ``inputs`` as records or as a mapping of column
names. A body that is not JSON or has another layout is left to MLflow's parser, which
reports its own errors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from explainable_model.exceptions import InvalidInputError
from explainable_model.features import CATEGORICAL, NUMERIC, FeatureSpec, fraction_error
from explainable_model.request_errors import INPUT_FORMATS

Cell = tuple[int, str, Any]


def check_json_values(body: bytes, features: list[FeatureSpec]) -> None:
    """Reject values in a JSON request body that MLflow's parsing would change silently.

    Parameters
    ----------
    body : bytes
        The request body, as the client sent it.
    features : list of FeatureSpec
        The model's features.

    Raises
    ------
    InvalidInputError
        If a whole-number (int64) column has a number with a fraction, or a text column has a
        JSON object or list. The message names the column and the row, not the value.
    """
    try:
        payload = json.loads(body)
    except ValueError:
        return
    if not isinstance(payload, dict):
        return
    whole_numbers = {spec.name for spec in features if spec.kind == NUMERIC and spec.dtype == "int64"}
    text = {spec.name: spec.dtype for spec in features if spec.kind == CATEGORICAL}
    for row, name, value in _cells(payload):
        if name in whole_numbers and _has_fraction(value):
            raise fraction_error(name, row)
        if name in text and isinstance(value, dict | list):
            kind = "object" if isinstance(value, dict) else "list"
            raise InvalidInputError(
                f"Column {name!r} expects text ({text[name]}), but row {row} contains a JSON {kind}; "
                "send one text value per cell."
            )


def _has_fraction(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and not value.is_integer()


def _cells(payload: dict[str, Any]) -> Iterator[Cell]:
    """Yield (row, column, value) for each cell of the layouts that name their columns.

    A payload with more or fewer than one input field yields nothing: MLflow rejects it.
    """
    if sum(field in payload for field in INPUT_FORMATS) != 1:
        return
    split = payload.get("dataframe_split")
    if isinstance(split, dict):
        columns, data = split.get("columns"), split.get("data")
        # A row whose length differs from the columns' is MLflow's error to report.
        if isinstance(columns, list) and isinstance(data, list):
            names = [str(column) for column in columns]
            if all(isinstance(values, list) and len(values) == len(names) for values in data):
                for row, values in enumerate(data):
                    yield from ((row, name, value) for name, value in zip(names, values, strict=True))
    for field in ("dataframe_records", "instances", "inputs"):
        yield from _named_cells(payload.get(field))


def _named_cells(data: Any) -> Iterator[Cell]:
    if isinstance(data, list):
        for row, record in enumerate(data):
            if isinstance(record, dict):
                yield from ((row, str(name), value) for name, value in record.items())
    elif isinstance(data, dict):
        for name, values in data.items():
            # A mapping of column names contains a list of values per column, or one row's values.
            cells = enumerate(values) if isinstance(values, list) else [(0, values)]
            yield from ((row, str(name), value) for row, value in cells)
