"""Per-request parameters: their schema, defaults and limits, and how a request is checked."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import Any

from mlflow.types import ParamSchema, ParamSpec

from explainable_model.exceptions import InvalidParameterError

EXPLAINER_NAMES = ("shap", "lime")
AUTO_CLASS = "auto"
PREDICTED_CLASS = "predicted"
ALL_CLASSES = "all"


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


def parse_explainers(value: str) -> tuple[str, ...]:
    """Parse ``"shap"``, ``"none"`` or a comma-separated list of explainer names."""
    names = tuple(dict.fromkeys(part.strip().lower() for part in value.split(",") if part.strip()))
    if names in ((), ("none",)):
        return ()
    unknown = [name for name in names if name not in EXPLAINER_NAMES]
    if unknown:
        raise InvalidParameterError(
            f"Parameter 'explainers' has unknown explainer {unknown[0]!r}; expected a comma-separated "
            f"list of {', '.join(EXPLAINER_NAMES)}, or 'none'."
        )
    return names


def _typed(name: str, value: Any) -> Any:
    expected = _TYPES[name]
    if expected is int:
        # MLflow's params schema rejects floats such as 100.0 for a long, so this does too.
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InvalidParameterError(f"Parameter {name!r} must be an integer, got {type(value).__name__} {value!r}.")
        return int(value)
    if not isinstance(value, str):
        raise InvalidParameterError(f"Parameter {name!r} must be a string, got {type(value).__name__} {value!r}.")
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
            f"Unknown parameter {unknown[0]!r}; valid parameters are {', '.join(sorted(_TYPES))}."
        )
    values = {name: _typed(name, params[name]) for name in _TYPES if params.get(name) is not None}
    merged = {**settings.to_dict(), **values}

    top_k = merged["top_k"]
    if not 0 <= top_k <= n_features:
        raise InvalidParameterError(f"Parameter 'top_k' must be between 0 and {n_features}, got {top_k}.")
    orderings = merged["shap_orderings"]
    if not 1 <= orderings <= settings.max_shap_orderings:
        raise InvalidParameterError(
            f"Parameter 'shap_orderings' must be between 1 and {settings.max_shap_orderings}, got {orderings}."
        )
    num_samples = merged["num_samples"]
    if not 2 <= num_samples <= settings.max_num_samples:
        raise InvalidParameterError(
            f"Parameter 'num_samples' must be between 2 and {settings.max_num_samples}, got {num_samples}."
        )
    num_features = merged["num_features"]
    if not 1 <= num_features <= n_features:
        raise InvalidParameterError(f"Parameter 'num_features' must be between 1 and {n_features}, got {num_features}.")
    explainers = parse_explainers(merged["explainers"])
    if top_k and not explainers:
        raise InvalidParameterError(
            f"Parameter 'top_k' is {top_k}, but reasons need an explainer and 'explainers' is 'none'; "
            "request 'shap' or 'lime', or set top_k to 0."
        )
    explained_class = merged["explained_class"]
    allowed_classes = [AUTO_CLASS, PREDICTED_CLASS, ALL_CLASSES, *(class_labels or [])]
    if class_labels is None and explained_class != AUTO_CLASS:
        raise InvalidParameterError(
            "Parameter 'explained_class' applies to classifiers only, and this model is a regressor; "
            f"got {explained_class!r}."
        )
    if explained_class not in allowed_classes:
        raise InvalidParameterError(
            f"Parameter 'explained_class' must be one of {', '.join(repr(c) for c in allowed_classes)}; "
            f"got {explained_class!r}."
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
