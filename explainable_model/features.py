"""Raw input features: their kinds, how they are stored, and how request rows are checked.

A feature is *categorical* when pandas does not consider its dtype numeric: ``str`` (the
default text dtype of pandas 3), ``object``, ``string`` and ``category`` alike. Checking
``dtype == object`` instead misses pandas 3 text columns entirely.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from explainable_model.exceptions import InvalidInputError

NUMERIC = "numeric"
CATEGORICAL = "categorical"
BOOLEAN = "boolean"

# Largest magnitude that a float64 whole number may have to be cast to int64 without overflow.
_INT64_SAFE = 2.0**62
# Number of names listed in an error before the rest are counted.
_MAX_LISTED = 5
# The model's own column names, listed in full up to this many in a column mismatch error.
_MAX_EXPECTED_LISTED = 30
_MAX_NAME_CHARACTERS = 64


@dataclass
class FeatureSpec:
    """One raw input feature as the estimator was trained on it.

    Attributes
    ----------
    name : str
        Column name in the input frame.
    kind : {"numeric", "categorical", "boolean"}
        How the feature is treated by explainers and the signature.
    dtype : str
        The training dtype: ``"int64"``, ``"float64"``, ``"bool"``, ``"str"``, ``"object"`` or
        ``"category"``.
    accepts_missing : bool
        Whether the estimator scores a row whose value is missing, as probed at save time.
    categories : list or None
        The categories of a ``category`` column, in order.
    """

    name: str
    kind: str
    dtype: str
    accepts_missing: bool = False
    categories: list[Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(**data)


def feature_kind(series: pd.Series) -> str:
    """Return the kind of a column from its dtype."""
    if ptypes.is_bool_dtype(series.dtype):
        return BOOLEAN
    if ptypes.is_numeric_dtype(series.dtype):
        return NUMERIC
    return CATEGORICAL


def _storage_dtype(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if ptypes.is_bool_dtype(dtype):
        return "bool"
    if ptypes.is_integer_dtype(dtype):
        return "int64"
    if ptypes.is_numeric_dtype(dtype):
        return "float64"
    if ptypes.is_object_dtype(dtype):
        return "object"
    return "str"


def describe_features(frame: pd.DataFrame) -> list[FeatureSpec]:
    """Build a :class:`FeatureSpec` for each column of a training frame."""
    specs = []
    for name in frame.columns:
        series = frame[name]
        categories = None
        if isinstance(series.dtype, pd.CategoricalDtype):
            categories = [_plain(value) for value in series.cat.categories]
        specs.append(
            FeatureSpec(
                name=str(name),
                kind=feature_kind(series),
                dtype=_storage_dtype(series),
                categories=categories,
            )
        )
    return specs


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def request_name(name: str) -> str:
    """Return a column or parameter name sent by a client, cut short for error messages.

    A client controls these names, so an unbounded one would make error messages and log lines
    as long as it likes.
    """
    if len(name) <= _MAX_NAME_CHARACTERS:
        return name
    return f"{name[:_MAX_NAME_CHARACTERS]}... ({len(name)} characters)"


def listed_names(names: list[str], limit: int = _MAX_LISTED) -> str:
    """Return up to ``limit`` quoted names separated by commas, and how many more there are."""
    listed = ", ".join(repr(name) for name in names[:limit])
    if len(names) > limit:
        listed += f" and {len(names) - limit} more"
    return listed


def check_columns(frame: pd.DataFrame, features: list[FeatureSpec]) -> None:
    """Raise :class:`InvalidInputError` naming missing and unexpected columns."""
    expected = [spec.name for spec in features]
    received = [str(name) for name in frame.columns]
    missing = [name for name in expected if name not in set(received)]
    unexpected = [name for name in received if name not in set(expected)]
    duplicated = sorted({name for name in received if received.count(name) > 1})

    problems = []
    if missing:
        problems.append(f"missing columns: {listed_names(missing)}")
    if unexpected:
        problems.append(f"unexpected columns: {listed_names([request_name(name) for name in unexpected])}")
    if duplicated:
        problems.append(f"duplicated columns: {listed_names([request_name(name) for name in duplicated])}")
    if problems:
        raise InvalidInputError(
            "Input columns do not match the model's features ("
            + "; ".join(problems)
            + f"). Send exactly these {len(expected)} columns: {listed_names(expected, _MAX_EXPECTED_LISTED)}."
        )


def fraction_error(name: str, row: Any) -> InvalidInputError:
    """Return the error for a number with a fraction in the int64 column ``name`` at ``row``."""
    return InvalidInputError(f"Column {name!r} expects whole numbers (int64), but row {row} has a fraction.")


def _coerce_numeric(series: pd.Series, spec: FeatureSpec) -> pd.Series:
    if ptypes.is_bool_dtype(series.dtype):
        series = series.astype("float64")
    if not ptypes.is_numeric_dtype(series.dtype):
        converted = pd.to_numeric(series, errors="coerce")
        bad = series[converted.isna() & series.notna()]
        if len(bad):
            raise InvalidInputError(
                f"Column {spec.name!r} expects numbers ({spec.dtype}), but row {bad.index[0]} contains "
                f"a {type(bad.iloc[0]).__name__} that is not a number."
            )
        series = converted
    values = series.astype("float64")
    if np.isinf(values.to_numpy()).any():
        row = int(np.flatnonzero(np.isinf(values.to_numpy()))[0])
        raise InvalidInputError(
            f"Column {spec.name!r} has an infinite value at row {row}; send a finite number"
            + (" or null." if spec.accepts_missing else ".")
        )
    if spec.dtype == "int64" and not values.isna().any():
        if not np.all(np.mod(values.to_numpy(), 1) == 0):
            row = int(np.flatnonzero(np.mod(values.to_numpy(), 1) != 0)[0])
            raise fraction_error(spec.name, row)
        if ptypes.is_signed_integer_dtype(series.dtype):
            return series.astype("int64")
        # A whole number beyond the int64 range would wrap around when cast, so it stays float64,
        # which is what scikit-learn converts it to anyway.
        if np.abs(values.to_numpy()).max() < _INT64_SAFE:
            return values.astype("int64")
    return values


def _as_text(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, float) and math.isnan(value)):
        return value
    return str(value)


def _coerce_categorical(series: pd.Series, spec: FeatureSpec) -> pd.Series:
    missing = series.isna()
    if spec.dtype == "category":
        values = pd.Categorical(series.where(~missing, None), categories=spec.categories)
        # pandas turns a value outside the categories into NaN without a word.
        unknown = np.flatnonzero(pd.isna(values) & ~missing.to_numpy())
        if len(unknown):
            known = [str(category) for category in spec.categories or []]
            raise InvalidInputError(
                f"Column {spec.name!r} at row {int(unknown[0])} has a value that is not one of its "
                f"{len(known)} training categories ({listed_names(known)})."
            )
        return pd.Series(values, index=series.index, name=series.name)
    # Missing text is NaN, never None: scikit-learn's imputers look for NaN in object columns.
    text = series.astype("object").where(~missing, np.nan)
    text = text.map(_as_text)
    return text.astype(spec.dtype)


def _coerce_boolean(series: pd.Series, spec: FeatureSpec) -> pd.Series:
    if ptypes.is_bool_dtype(series.dtype) and not series.isna().any():
        return series.astype("bool")
    if ptypes.is_numeric_dtype(series.dtype) and series.dropna().isin([0, 1]).all():
        return series.astype("float64") if series.isna().any() else series.astype("bool")
    raise InvalidInputError(f"Column {spec.name!r} expects true or false values.")


def coerce_frame(frame: pd.DataFrame, features: list[FeatureSpec]) -> pd.DataFrame:
    """Return ``frame`` with the training columns in training order and dtypes.

    Columns are matched by name, never by position. Values are converted only where no
    information is lost: whole numbers for integer columns, text for categorical ones.

    Raises
    ------
    InvalidInputError
        If a column is missing, unexpected or duplicated, a value cannot be converted, or a
        value is missing in a column whose estimator does not accept missing values.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"Input must be a pandas DataFrame with named columns, got {type(frame).__name__}.")
    check_columns(frame, features)
    if len(frame) == 0:
        raise InvalidInputError("Input has no rows; send at least one row.")

    dtypes = dict(zip(map(str, frame.columns), frame.dtypes, strict=True))
    columns = _numeric_block(frame, features, dtypes)
    if len(columns) == len(features) and _unchanged(frame, features, columns, dtypes):
        # Every feature is numeric, valid and already in its training dtype and place: the
        # common case of one request row, where building a new frame would cost most of the check.
        return frame if _default_index(frame.index) else frame.reset_index(drop=True)
    for spec in features:
        if spec.name in columns:
            continue
        series = frame[spec.name].reset_index(drop=True)
        if series.isna().any() and not spec.accepts_missing:
            row = int(np.flatnonzero(series.isna().to_numpy())[0])
            raise InvalidInputError(
                f"Column {spec.name!r} has a missing value at row {row}, and the estimator does "
                "not accept missing values in this column. Fill it before scoring."
            )
        if spec.kind == NUMERIC:
            columns[spec.name] = _coerce_numeric(series, spec)
        elif spec.kind == BOOLEAN:
            columns[spec.name] = _coerce_boolean(series, spec)
        else:
            columns[spec.name] = _coerce_categorical(series, spec)
    return pd.DataFrame({spec.name: columns[spec.name] for spec in features})


def _unchanged(
    frame: pd.DataFrame, features: list[FeatureSpec], columns: dict[str, Any], dtypes: dict[str, Any]
) -> bool:
    """Return whether ``frame`` already equals the frame built from the converted ``columns``."""
    if list(dtypes) != [spec.name for spec in features]:
        return False
    return all(dtypes[spec.name] == columns[spec.name].dtype for spec in features)


def _default_index(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _numeric_block(frame: pd.DataFrame, features: list[FeatureSpec], dtypes: dict[str, Any]) -> dict[str, Any]:
    """Convert the numeric features that already have numeric dtypes, all at once.

    Checking each column on its own costs about 0.3 ms per column, which dominates the
    scoring of one row. A feature with a value that needs an error message is left out, so
    the column-by-column path raises it with its row.
    """
    specs = [s for s in features if s.kind == NUMERIC and dtypes[s.name].kind in "iuf"]
    if not specs:
        return {}
    names = [s.name for s in specs]
    # Selecting columns builds a new frame, so a frame that already has exactly these columns
    # in this order is converted as it is.
    block = frame if list(dtypes) == names else frame[names]
    values = block.to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        # An infinite value has no remainder; its column is rejected below.
        whole = np.mod(np.where(missing, 0.0, values), 1) == 0
    valid = ~np.isinf(values).any(axis=0)
    accepts = np.array([s.accepts_missing for s in specs])
    valid &= accepts | ~missing.any(axis=0)
    is_int = np.array([s.dtype == "int64" for s in specs])
    valid &= ~is_int | missing.any(axis=0) | whole.all(axis=0)
    small = np.abs(np.where(missing, 0.0, values)).max(axis=0) < _INT64_SAFE

    columns: dict[str, Any] = {}
    for j, spec in enumerate(specs):
        if not valid[j]:
            continue
        column = values[:, j]
        if is_int[j] and not missing[:, j].any() and small[j]:
            column = column.astype("int64")
        columns[spec.name] = column
    return columns


def json_value(value: Any) -> Any:
    """Return ``value`` as a JSON-ready Python object, with missing values as None."""
    value = _plain(value)
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def restore_dtypes(frame: pd.DataFrame, features: list[FeatureSpec]) -> pd.DataFrame:
    """Cast columns built from object arrays back to the training dtypes."""
    columns = {}
    for spec in features:
        values = frame[spec.name]
        if spec.dtype == "category":
            columns[spec.name] = pd.Categorical(values, categories=spec.categories)
        elif spec.kind == CATEGORICAL:
            columns[spec.name] = values.where(values.notna(), np.nan).astype(spec.dtype)
        else:
            numbers = pd.to_numeric(values)
            if spec.dtype == "int64" and not numbers.isna().any():
                numbers = numbers.astype("int64")
            columns[spec.name] = numbers
    return pd.DataFrame(columns, index=frame.index)
