"""Convert attribution columns of a model's output into a ``shap.Explanation``.

A ``shap.Explanation`` built here has the raw feature names, the per-row base values and the
rows' raw input values, so shap's own plots (``shap.plots.bar``, ``beeswarm``, ``waterfall``,
``force``) work on a model's output in a notebook.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import shap

from explainable_model import output as columns
from explainable_model.exceptions import InvalidInputError, InvalidParameterError

# The attribution kinds that convert, with the column that contains their base value.
_BASE_KINDS = {columns.SHAP: columns.SHAP_BASE_VALUE, columns.LIME: columns.LIME_INTERCEPT}


def attribution_columns(frame: pd.DataFrame, kind: str = columns.SHAP) -> dict[str | None, dict[str, str]]:
    """Return the attribution columns of ``frame`` by class label, then by raw feature name.

    The class label is None for the columns of the explained class (``shap:FEATURE``), and the
    label as text for per-class columns (``shap@CLASS:FEATURE``).
    """
    found: dict[str | None, dict[str, str]] = {}
    for name in frame.columns:
        try:
            parsed = columns.parse_column(str(name))
        except ValueError:
            continue
        if parsed.kind == kind and parsed.feature is not None:
            found.setdefault(parsed.class_label, {})[parsed.feature] = str(name)
    return found


def feature_values(data: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """Return the rows' raw values as an object array: numbers as float (NaN when missing), others as is.

    shap's beeswarm plot colours a feature by value when its column converts to float, and
    draws it grey otherwise, so text categories stay text.
    """
    result = np.empty((len(data), len(feature_names)), dtype=object)
    for f, name in enumerate(feature_names):
        series = data[name]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            result[:, f] = [None if pd.isna(value) else value for value in series.tolist()]
        else:
            result[:, f] = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()
    return result


def to_shap_explanation(
    output: pd.DataFrame,
    data: pd.DataFrame | None = None,
    kind: str = columns.SHAP,
    class_label: Any = None,
) -> shap.Explanation:
    """Build a ``shap.Explanation`` from the output of a model's ``predict``.

    Parameters
    ----------
    output : pandas.DataFrame
        What ``predict`` returned: ``shap:FEATURE`` columns and ``shap_base_value``, or with
        ``explained_class="all"`` the same per class (``shap@CLASS:FEATURE``).
    data : pandas.DataFrame, optional
        The input rows, in the same order, so that plots can show and colour by feature value.
        Only the attributed features are taken from it.
    kind : {"shap", "lime"}
        Which attributions to convert. LIME weights start from ``lime_intercept``, so their
        sum plus the intercept is ``lime_local_prediction``.
    class_label : optional
        With per-class columns, the class to convert; by default every class, giving values of
        shape (n_rows, n_features, n_classes) with the labels as ``output_names``.

    Returns
    -------
    shap.Explanation
        ``values`` (n_rows, n_features) for one explained class or a regressor,
        ``base_values`` (n_rows,), ``data`` the raw values (object array, or None without
        ``data``) and ``feature_names`` the raw feature names in the model's order.

    Raises
    ------
    InvalidParameterError
        If ``kind`` is not ``"shap"`` or ``"lime"``, or ``class_label`` has no columns.
    InvalidInputError
        If ``output`` has no attribution columns of ``kind``, or ``data`` lacks a feature or
        has another number of rows.
    """
    if kind not in _BASE_KINDS:
        raise InvalidParameterError(f"kind must be one of {sorted(_BASE_KINDS)}, got {kind!r}.")
    by_class = attribution_columns(output, kind)
    if not by_class:
        raise InvalidInputError(
            f"The output has no {kind!r} attribution columns; predict with params "
            f"{{'explainers': '{kind}'}} to get them."
        )
    if None in by_class:
        labels: list[str | None] = [None]
    elif class_label is not None:
        if str(class_label) not in by_class:
            raise InvalidParameterError(
                f"class_label {class_label!r} has no {kind!r} columns in the output; "
                f"the output has the classes {sorted(label for label in by_class if label is not None)}."
            )
        labels = [str(class_label)]
    else:
        labels = list(by_class)

    feature_names = list(by_class[labels[0]])
    values = np.stack(
        [output[[by_class[label][name] for name in feature_names]].to_numpy(dtype="float64") for label in labels],
        axis=-1,
    )
    base_names = [columns.column_name(_BASE_KINDS[kind], class_label=label) for label in labels]
    base_values = np.stack([output[name].to_numpy(dtype="float64") for name in base_names], axis=-1)

    raw = None
    if data is not None:
        missing = [name for name in feature_names if name not in data.columns]
        if missing:
            raise InvalidInputError(
                f"data lacks the attributed feature columns {missing}; pass the rows that were scored."
            )
        if len(data) != len(output):
            raise InvalidInputError(
                f"data has {len(data)} rows but the output has {len(output)}; pass the rows that were scored."
            )
        raw = feature_values(data, feature_names)

    if len(labels) == 1:
        return shap.Explanation(values[:, :, 0], base_values[:, 0], data=raw, feature_names=feature_names)
    return shap.Explanation(values, base_values, data=raw, feature_names=feature_names, output_names=labels)
