"""Per-request parameters: their schema, defaults and limits, and how a request is checked."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

from mlflow.types import ParamSchema, ParamSpec

from explainable_model.exceptions import InvalidParameterError
from explainable_model.features import request_name

EXPLAINER_NAMES = ("shap", "lime")
AUTO_CLASS = "auto"
PREDICTED_CLASS = "predicted"
ALL_CLASSES = "all"
# Rows that one served request may contain unless the model is saved with another max_rows.
DEFAULT_MAX_ROWS = 10_000


@dataclass(frozen=True)
class ExplanationSettings:
    """Defaults for every request parameter and the limits that a request may not pass.

    Attributes
    ----------
    explainers : str
        Comma-separated explainers run by default: ``"shap"``, ``"lime"``, ``"shap,lime"`` or
        ``"none"``.
    top_k : int
        Reason columns added by default.
    explained_class : str
        ``"auto"`` (positive class for binary models, predicted class for multiclass ones),
        ``"predicted"``, ``"all"`` or a class label.
    seed : int
        Seed of sampling explainers.
    shap_orderings : int
        Feature orderings that permutation SHAP samples per row.
    max_shap_orderings : int
        Largest ``shap_orderings`` that a request may ask for.
    num_samples : int
        Perturbed samples per row that LIME scores.
    max_num_samples : int
        Largest ``num_samples`` that a request may ask for.
    num_features : int
        Largest number of features in one LIME explanation.
    n_jobs : int or None
        Processes or threads that exact tree explainers use; None means all cores. The
        ``EXPLAINABLE_MODEL_N_JOBS`` environment variable overrides it where the model runs.
    max_rows : int or None
        Largest number of rows in one served request; None means no limit. ``explainable-model
        serve`` rejects a larger request; in-process and batch scoring do not apply it.
    """

    explainers: str = "shap"
    top_k: int = 0
    explained_class: str = AUTO_CLASS
    seed: int = 0
    shap_orderings: int = 10
    max_shap_orderings: int = 100
    num_samples: int = 5000
    max_num_samples: int = 20_000
    num_features: int = 10
    n_jobs: int | None = None
    max_rows: int | None = DEFAULT_MAX_ROWS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RequestOptions:
    """The checked parameters of one predict call."""

    explainers: tuple[str, ...]
    top_k: int
    explained_class: str
    seed: int
    shap_orderings: int
    num_samples: int
    num_features: int


_TYPES = {
    "explainers": str,
    "top_k": int,
    "explained_class": str,
    "seed": int,
    "shap_orderings": int,
    "num_samples": int,
    "num_features": int,
}


def param_schema(settings: ExplanationSettings) -> ParamSchema:
    """Return the signature's params schema, with the settings' defaults."""
    return ParamSchema(
        [
            ParamSpec("explainers", "string", settings.explainers),
            ParamSpec("top_k", "long", settings.top_k),
            ParamSpec("explained_class", "string", settings.explained_class),
            ParamSpec("seed", "long", settings.seed),
            ParamSpec("shap_orderings", "long", settings.shap_orderings),
            ParamSpec("num_samples", "long", settings.num_samples),
            ParamSpec("num_features", "long", settings.num_features),
        ]
    )


def parse_explainers(value: str, quote_unknown: bool = False) -> tuple[str, ...]:
    """Parse ``"shap"``, ``"none"`` or a comma-separated list of explainer names.

    ``quote_unknown`` names an unknown explainer in the error. Requests leave it off, so that a
    served error response does not repeat the request's value.
    """
    names = tuple(dict.fromkeys(part.strip().lower() for part in value.split(",") if part.strip()))
    if names in ((), ("none",)):
        return ()
    unknown = [name for name in names if name not in EXPLAINER_NAMES]
    if unknown:
        named = f" {unknown[0]!r}" if quote_unknown else ""
        raise InvalidParameterError(
            f"Parameter 'explainers' names an unknown explainer{named}; expected a comma-separated "
            f"list of {', '.join(EXPLAINER_NAMES)}, or 'none'."
        )
    return names


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a float",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def _type_name(value: Any) -> str:
    # Messages name the type of a rejected value, never the value, so that a served error
    # response does not repeat what the request sent.
    return _TYPE_NAMES.get(type(value), f"a value of type {type(value).__name__}")


def _out_of_range(name: str, low: int, high: int, value: int) -> InvalidParameterError:
    side = f"below {low}" if value < low else f"above {high}"
    return InvalidParameterError(f"Parameter {name!r} must be between {low} and {high}; the request's value is {side}.")


def _typed(name: str, value: Any) -> Any:
    expected = _TYPES[name]
    if expected is int:
        # MLflow's params schema rejects floats such as 100.0 for a long, so this does too.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InvalidParameterError(f"Parameter {name!r} must be an integer, got {_type_name(value)}.")
        return int(value)
    if not isinstance(value, str):
        raise InvalidParameterError(f"Parameter {name!r} must be a string, got {_type_name(value)}.")
    return value


def parse_params(
    params: dict[str, Any] | None,
    settings: ExplanationSettings,
    n_features: int,
    class_labels: list[str] | None,
    strict: bool = True,
) -> RequestOptions:
    """Check request parameters and fill in defaults.

    Parameters
    ----------
    params : dict or None
        The request's parameters.
    settings : ExplanationSettings
        Defaults and limits stored with the model.
    n_features : int
        Number of raw features, the upper bound of ``top_k``.
    class_labels : list of str or None
        Class labels as text, None for regressors.
    strict : bool
        Reject names that are not parameters of the model.

    Raises
    ------
    InvalidParameterError
        If a name is unknown (with ``strict``), a value has the wrong type, or is out of range.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(_TYPES))
    if unknown and strict:
        raise InvalidParameterError(
            f"Unknown parameter {request_name(unknown[0])!r}; valid parameters are {', '.join(sorted(_TYPES))}."
        )
    values = {name: _typed(name, params[name]) for name in _TYPES if params.get(name) is not None}
    merged = {**settings.to_dict(), **values}

    top_k = merged["top_k"]
    if not 0 <= top_k <= n_features:
        raise _out_of_range("top_k", 0, n_features, top_k)
    orderings = merged["shap_orderings"]
    if not 1 <= orderings <= settings.max_shap_orderings:
        raise _out_of_range("shap_orderings", 1, settings.max_shap_orderings, orderings)
    num_samples = merged["num_samples"]
    if not 2 <= num_samples <= settings.max_num_samples:
        raise _out_of_range("num_samples", 2, settings.max_num_samples, num_samples)
    num_features = merged["num_features"]
    if not 1 <= num_features <= n_features:
        raise _out_of_range("num_features", 1, n_features, num_features)
    explainers = parse_explainers(merged["explainers"])
    if top_k and not explainers:
        raise InvalidParameterError(
            "Parameter 'top_k' asks for reasons, but reasons need an explainer and 'explainers' is 'none'; "
            "request 'shap' or 'lime', or set top_k to 0."
        )
    explained_class = merged["explained_class"]
    allowed_classes = [AUTO_CLASS, PREDICTED_CLASS, ALL_CLASSES, *(class_labels or [])]
    if class_labels is None and explained_class != AUTO_CLASS:
        raise InvalidParameterError(
            "Parameter 'explained_class' applies to classifiers only, and this model is a regressor; "
            "leave it out or send 'auto'."
        )
    if explained_class not in allowed_classes:
        raise InvalidParameterError(
            f"Parameter 'explained_class' must be one of {', '.join(repr(c) for c in allowed_classes)}; "
            "the request's value is not one of them."
        )
    return RequestOptions(
        explainers=explainers,
        top_k=top_k,
        explained_class=explained_class,
        seed=merged["seed"],
        shap_orderings=orderings,
        num_samples=num_samples,
        num_features=num_features,
    )
