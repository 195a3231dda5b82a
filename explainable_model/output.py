"""Output column names: how they are built and parsed back.

Every output column name is ``KIND``, ``KIND:FEATURE``, ``KIND@CLASS`` or
``KIND@CLASS:FEATURE``:

- ``KIND`` is one of a fixed set of words (``prediction``, ``probability``, ``shap``,
  ``shap_base_value`` ...) that contain neither ``:`` nor ``@``;
- ``CLASS`` is a class label with ``%``, ``:`` and ``@`` percent-encoded, so the first ``:``
  of a name always ends the kind and class part;
- ``FEATURE`` is the raw feature name exactly as sent, whatever characters it holds.

So ``shap:Income`` is the SHAP attribution of feature ``Income`` for the explained class,
``shap@bad:Income`` the same for class ``bad``, ``probability@bad`` the probability of class
``bad``, and a feature called ``shap_base_value`` gets the column ``shap:shap_base_value``,
which cannot be confused with the base value column. Any string is a valid Spark struct field
name, so these names are usable as they are in a Spark result type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PREDICTION = "prediction"
PROBABILITY = "probability"
EXPLAINED_CLASS = "explained_class"
SHAP = "shap"
SHAP_BASE_VALUE = "shap_base_value"
SHAP_UNITS = "shap_units"
LIME = "lime"
LIME_INTERCEPT = "lime_intercept"
LIME_LOCAL_PREDICTION = "lime_local_prediction"
LIME_SCORE = "lime_score"
REASON_FEATURE = "reason_feature"
REASON_VALUE = "reason_value"
REASON_ATTRIBUTION = "reason_attribution"

KINDS = (
    PREDICTION,
    PROBABILITY,
    EXPLAINED_CLASS,
    SHAP,
    SHAP_BASE_VALUE,
    SHAP_UNITS,
    LIME,
    LIME_INTERCEPT,
    LIME_LOCAL_PREDICTION,
    LIME_SCORE,
    REASON_FEATURE,
    REASON_VALUE,
    REASON_ATTRIBUTION,
)
_REASON_KINDS = (REASON_FEATURE, REASON_VALUE, REASON_ATTRIBUTION)

_ESCAPES = (("%", "%25"), (":", "%3A"), ("@", "%40"))


def escape_class(label: Any) -> str:
    """Return a class label as text that contains no ``:`` or ``@``."""
    text = str(label)
    for character, code in _ESCAPES:
        text = text.replace(character, code)
    return text


def unescape_class(text: str) -> str:
    """Invert :func:`escape_class`."""
    for character, code in reversed(_ESCAPES):
        text = text.replace(code, character)
    return text


def column_name(kind: str, feature: str | None = None, class_label: Any = None) -> str:
    """Build an output column name.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`; reason columns add their rank, as in ``reason_feature_1``.
    feature : str, optional
        Raw feature name, for attribution columns.
    class_label : optional
        Class label, for per-class columns.
    """
    name = kind if class_label is None else f"{kind}@{escape_class(class_label)}"
    return name if feature is None else f"{name}:{feature}"


@dataclass(frozen=True)
class ParsedColumn:
    """The parts of an output column name.

    Attributes
    ----------
    kind : str
    class_label : str or None
        The class label as text, or None for a column that is not per class.
    feature : str or None
        The raw feature name, or None for a column that is not per feature.
    """

    kind: str
    class_label: str | None
    feature: str | None


def parse_column(name: str) -> ParsedColumn:
    """Split an output column name into its kind, class label and feature.

    Examples
    --------
    >>> parse_column("shap@bad:Income")
    ParsedColumn(kind='shap', class_label='bad', feature='Income')
    >>> parse_column("shap:a:b")
    ParsedColumn(kind='shap', class_label=None, feature='a:b')

    Raises
    ------
    ValueError
        If the kind is not one that this library writes.
    """
    head, separator, feature = name.partition(":")
    kind, at, label = head.partition("@")
    base, _, rank = kind.rpartition("_")
    if kind not in KINDS and not (base in _REASON_KINDS and rank.isdigit()):
        raise ValueError(
            f"{name!r} is not an explainable_model output column; its kind {kind!r} is not one of {KINDS}."
        )
    return ParsedColumn(
        kind=kind,
        class_label=unescape_class(label) if at else None,
        feature=feature if separator else None,
    )


def reason_column(kind: str, rank: int) -> str:
    """Return the name of a reason column, rank counted from 1."""
    return f"{kind}_{rank}"
