"""Save, log and load explainable models with MLflow's conventions."""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PyFuncModel
from mlflow.utils.model_utils import _validate_and_prepare_target_save_path

from explainable_model._version import __version__
from explainable_model.engine import ExplanationEngine
from explainable_model.estimators import check_fitted, detect_task, final_estimator, model_output
from explainable_model.exceptions import (
    AdditivityError,
    ExplainableModelError,
    InvalidInputError,
    InvalidParameterError,
)
from explainable_model.explainers import (
    SHAP_METHODS,
    Attributions,
    build_shap_explainer,
    choose_shap_method,
    shap_units,
)
from explainable_model.explainers.factory import transformed_groups
from explainable_model.features import FeatureSpec, check_columns, coerce_frame, describe_features
from explainable_model.model import FLAVOR_NAME
from explainable_model.params import ExplanationSettings, parse_explainers
from explainable_model.persistence import (
    ESTIMATOR_ARTIFACT,
    SERIALIZATION_FORMATS,
    STATE_ARTIFACT,
    build_manifest,
    save_estimator,
    write_state,
)
from explainable_model.signature import build_signature

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parent
_MODEL_CODE = _PACKAGE_DIR / "_model_code.py"
_REQUIRED_DISTRIBUTIONS = (
    "mlflow",
    "shap",
    "scikit-learn",
    "pandas",
    "numpy",
    "scipy",
    "pyarrow",
    "skops",
    "cloudpickle",
)
# An exact method passes the additivity check when base value plus attributions match the
# model output to this tolerance, scaled by the output's magnitude when it is above 1.
ADDITIVITY_TOLERANCE = 1e-6
_ADDITIVITY_ROWS_EXACT = 200
_ADDITIVITY_ROWS_SAMPLED = 20
_EXAMPLE_ROWS = 5
_UINT64_MASK = 2**64 - 1


def default_requirements() -> list[str]:
    """Return the pip requirements of a saved model: the packages it loads, pinned."""
    return [f"{name}=={importlib_metadata.version(name)}" for name in _REQUIRED_DISTRIBUTIONS]


@dataclass
class _Prepared:
    """Everything computed from the arguments before any file is written."""

    estimator: Any
    engine: ExplanationEngine
    features: list[FeatureSpec]
    background: pd.DataFrame
    check_rows: pd.DataFrame
    method: str
    additivity_error: float
    additivity_rows: int
    signature: ModelSignature
    input_example: pd.DataFrame


def _check_arguments(
    background_data: Any,
    explainers: Any,
    shap_method: str,
    background_size: int,
    shap_orderings: int,
    max_shap_orderings: int,
    seed: int,
    serialization_format: str,
) -> None:
    if not isinstance(background_data, pd.DataFrame) or background_data.empty:
        raise InvalidParameterError(
            "background_data must be a non-empty pandas DataFrame of raw training rows, with the "
            f"columns the estimator was fitted on; got {type(background_data).__name__}."
        )
    if background_data.columns.duplicated().any():
        duplicated = sorted({str(c) for c in background_data.columns[background_data.columns.duplicated()]})
        raise InvalidParameterError(f"background_data has duplicated columns: {duplicated}.")
    parse_explainers(explainers if isinstance(explainers, str) else ",".join(explainers))
    if shap_method not in SHAP_METHODS:
        raise InvalidParameterError(f"shap_method must be one of {SHAP_METHODS}, got {shap_method!r}.")
    if not isinstance(background_size, int) or background_size < 1:
        raise InvalidParameterError(f"background_size must be a positive integer, got {background_size!r}.")
    if not isinstance(max_shap_orderings, int) or max_shap_orderings < 1:
        raise InvalidParameterError(f"max_shap_orderings must be a positive integer, got {max_shap_orderings!r}.")
    if not isinstance(shap_orderings, int) or not 1 <= shap_orderings <= max_shap_orderings:
        raise InvalidParameterError(
            f"shap_orderings must be an integer between 1 and max_shap_orderings={max_shap_orderings}, "
            f"got {shap_orderings!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidParameterError(f"seed must be an integer, got {seed!r}.")
    if serialization_format not in SERIALIZATION_FORMATS:
        raise InvalidParameterError(
            f"serialization_format must be one of {SERIALIZATION_FORMATS}, got {serialization_format!r}."
        )


def _ordered_features(estimator: Any, background_data: pd.DataFrame) -> pd.DataFrame:
    """Return background_data with columns in the order the estimator was fitted on."""
    frame = background_data.rename(columns=str)
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None:
        logger.warning(
            "%s was fitted without feature names; its columns are taken in background_data's order.",
            type(estimator).__name__,
        )
        return frame
    fitted = [str(name) for name in fitted]
    missing = [name for name in fitted if name not in frame.columns]
    unexpected = [name for name in frame.columns if name not in fitted]
    if missing or unexpected:
        raise InvalidParameterError(
            "background_data columns differ from the estimator's feature_names_in_: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}. Pass the raw training columns."
        )
    return frame[fitted]


def _accepts_missing(estimator: Any, rows: pd.DataFrame, name: str) -> bool:
    probe = rows.copy()
    # where() with an all-False mask fills with the dtype's own missing value, so a category
    # column stays a category column.
    probe[name] = probe[name].where(np.zeros(len(probe), dtype=bool))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.predict(probe)
    except (ValueError, TypeError, KeyError, IndexError):
        return False
    return True


def _sample_rows(frame: pd.DataFrame, n_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """Return up to ``n_rows`` distinct rows of ``frame`` in random order, with a fresh index."""
    picked = rng.choice(len(frame), size=min(n_rows, len(frame)), replace=False)
    return frame.iloc[picked].reset_index(drop=True)


def _example_rows(background: pd.DataFrame) -> pd.DataFrame:
    complete = background.dropna()
    rows = complete if len(complete) >= _EXAMPLE_ROWS else background
    return rows.iloc[:_EXAMPLE_ROWS].reset_index(drop=True)


def _prepare(
    estimator: Any,
    background_data: pd.DataFrame,
    explainers: Any,
    shap_method: str,
    background_size: int,
    shap_orderings: int,
    max_shap_orderings: int,
    top_k: int,
    seed: int,
    serialization_format: str,
    signature: ModelSignature | None,
    input_example: pd.DataFrame | None,
) -> _Prepared:
    _check_arguments(
        background_data,
        explainers,
        shap_method,
        background_size,
        shap_orderings,
        max_shap_orderings,
        seed,
        serialization_format,
    )
    check_fitted(estimator)
    explainer_names = explainers if isinstance(explainers, str) else ",".join(explainers)
    settings = ExplanationSettings(
        explainers=explainer_names or "none",
        top_k=top_k,
        seed=seed,
        shap_orderings=shap_orderings,
        max_shap_orderings=max_shap_orderings,
    )

    frame = _ordered_features(estimator, background_data).reset_index(drop=True)
    task, classes = detect_task(estimator)
    features = describe_features(frame)
    probe_rows = frame.iloc[: min(len(frame), 5)]
    for spec in features:
        spec.accepts_missing = _accepts_missing(estimator, probe_rows, spec.name)
    try:
        frame = coerce_frame(frame, features)
    except InvalidInputError as err:
        raise InvalidParameterError(f"background_data cannot be used: {err}") from err
    rng = np.random.default_rng(seed & _UINT64_MASK)
    background = _sample_rows(frame, background_size, rng)

    groups = transformed_groups(estimator, background, len(features))
    method = choose_shap_method(estimator, groups is not None) if shap_method == "auto" else shap_method
    units = shap_units(estimator, method, task)
    explainer = build_shap_explainer(estimator, method, task, units, features, background, n_orderings=shap_orderings)
    engine = ExplanationEngine(estimator, features, task, classes, units, explainer, settings)
    logger.info("Explaining %s with %s SHAP in %s units.", type(final_estimator(estimator)).__name__, method, units)

    n_check = _ADDITIVITY_ROWS_EXACT if explainer.exact else _ADDITIVITY_ROWS_SAMPLED
    check_rows = _sample_rows(frame, n_check, rng)
    error = _check_additivity(engine, check_rows, method)

    example = _example_rows(background) if input_example is None else coerce_frame(input_example, features)
    example_output = engine.predict(example)
    built = build_signature(features, settings, example_output)
    if signature is not None:
        built = _merge_signature(signature, built)
    return _Prepared(
        estimator, engine, features, background, check_rows, method, error, len(check_rows), built, example
    )


def _check_additivity(engine: ExplanationEngine, rows: pd.DataFrame, method: str) -> float:
    error = engine.additivity_error(rows)
    scale = max(1.0, float(np.mean(np.abs(model_output(engine.estimator, rows, engine.units, engine.task)))))
    logger.info("Largest additivity error of %s SHAP on %d rows: %.3g.", method, len(rows), error)
    if engine.explainer.exact and error > ADDITIVITY_TOLERANCE * scale:
        raise AdditivityError(
            f"{method} SHAP attributions do not add up to the model output: base value plus "
            f"attributions differ from it by up to {error:.3g} {engine.units} on {len(rows)} "
            f"background rows (tolerance {ADDITIVITY_TOLERANCE * scale:.3g}). The explainer does not "
            "match this estimator; save with shap_method='permutation' to explain it model-agnostically."
        )
    return error


def _merge_signature(user: ModelSignature, built: ModelSignature) -> ModelSignature:
    names = user.inputs.input_names() if user.inputs is not None else []
    expected = built.inputs.input_names()
    if sorted(map(str, names)) != sorted(expected):
        raise InvalidParameterError(
            f"signature inputs {names[:5]} do not match the features {expected[:5]}; pass a signature "
            "whose input columns are the raw features, or none to have it built."
        )
    return ModelSignature(inputs=user.inputs, outputs=built.outputs, params=built.params)


def _flavor_config(prepared: _Prepared, serialization_format: str, manifest: dict[str, str]) -> dict[str, Any]:
    engine = prepared.engine
    return {
        "library_version": __version__,
        "task": engine.task,
        "classes": engine.classes,
        "features": [spec.to_dict() for spec in prepared.features],
        "explainers": {
            "shap": {"method": prepared.method, "units": engine.units, "exact": engine.explainer.exact},
            "defaults": engine.settings.to_dict(),
            "background_rows": len(prepared.background),
        },
        "attribution_units": engine.units,
        "additivity": {"max_error": prepared.additivity_error, "rows": prepared.additivity_rows},
        "estimator": {
            "class": f"{type(prepared.estimator).__module__}.{type(prepared.estimator).__name__}",
            "path": f"artifacts/{ESTIMATOR_ARTIFACT}",
            "serialization_format": serialization_format,
        },
        "manifest": manifest,
    }


def _write_model(
    prepared: _Prepared,
    path: Path,
    mlflow_model: Model | None,
    serialization_format: str,
    skops_trusted_types: list[str] | None,
    pip_requirements: list[str] | None,
    extra_pip_requirements: list[str] | None,
    metadata: dict[str, Any] | None,
) -> None:
    requirements = default_requirements() if pip_requirements is None else list(pip_requirements)
    with tempfile.TemporaryDirectory() as staging:
        estimator_dir = Path(staging, ESTIMATOR_ARTIFACT)
        state_dir = Path(staging, STATE_ARTIFACT)
        used_format = save_estimator(
            prepared.estimator,
            estimator_dir,
            serialization_format,
            requirements,
            prepared.check_rows,
            skops_trusted_types,
        )
        engine = prepared.engine
        write_state(
            state_dir,
            prepared.features,
            {
                "shap": {"method": prepared.method, "units": engine.units},
                "settings": engine.settings.to_dict(),
            },
            prepared.background,
        )
        mlflow_model = mlflow_model or Model()
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(_MODEL_CODE),
            artifacts={ESTIMATOR_ARTIFACT: str(estimator_dir), STATE_ARTIFACT: str(state_dir)},
            code_paths=[str(_PACKAGE_DIR)],
            signature=prepared.signature,
            input_example=prepared.input_example,
            pip_requirements=None if extra_pip_requirements else requirements,
            extra_pip_requirements=(requirements + list(extra_pip_requirements)) if extra_pip_requirements else None,
            metadata=metadata,
            mlflow_model=mlflow_model,
        )
    manifest = build_manifest(path)
    mlflow_model.add_flavor(FLAVOR_NAME, **_flavor_config(prepared, used_format, manifest))
    mlflow_model.save(str(path / "MLmodel"))


def save_model(
    estimator: Any,
    path: str | Path,
    background_data: pd.DataFrame,
    explainers: str | tuple[str, ...] = ("shap",),
    shap_method: str = "auto",
    background_size: int = 100,
    shap_orderings: int = 10,
    max_shap_orderings: int = 100,
    top_k: int = 0,
    seed: int = 0,
    serialization_format: str = "auto",
    skops_trusted_types: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example: pd.DataFrame | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    mlflow_model: Model | None = None,
    _prepared: _Prepared | None = None,
) -> None:
    """Save an estimator with its SHAP explainer as an MLflow model directory.

    The directory contains the ``python_function`` flavor, an ``explainable_model`` flavor
    with the configuration, the estimator as an ``mlflow.sklearn`` model, the explainers'
    state (background sample, settings) and a SHA-256 manifest checked at load.

    Parameters
    ----------
    estimator : fitted scikit-learn estimator or Pipeline
        Regressor, binary or multiclass classifier.
    path : str or Path
        Directory to create; it must not exist or must be empty.
    background_data : pandas.DataFrame
        Raw training rows with the columns the estimator was fitted on. A sample of
        ``background_size`` rows is stored with the model.
    explainers : str or tuple of str
        Explainers run by ``predict`` unless a request says otherwise: ``("shap",)`` or ``()``.
    shap_method : {"auto", "tree", "linear", "permutation"}
        ``"auto"`` picks exact TreeSHAP for tree models, exact linear SHAP for linear ones
        and sampled permutation SHAP for the rest.
    background_size : int
        Rows of background data stored with the model.
    shap_orderings : int
        Feature orderings sampled per row by permutation SHAP, by default.
    max_shap_orderings : int
        Largest ``shap_orderings`` a request may ask for.
    top_k : int
        Reason columns returned by default.
    seed : int
        Seed of the background sample and of sampling explainers, by default.
    serialization_format : {"auto", "skops", "cloudpickle"}
        Format of the estimator. ``"auto"`` uses skops when it can represent the estimator
        and cloudpickle otherwise.
    skops_trusted_types : list of str, optional
        Types that skops may load, for estimators that hold custom classes.
    signature : mlflow.models.ModelSignature, optional
        Input schema to use instead of the one built from ``background_data``; outputs and
        params are always built by this library.
    input_example : pandas.DataFrame, optional
        Rows stored as the input example; by default a few background rows.
    pip_requirements, extra_pip_requirements : list of str, optional
        As in MLflow; by default the pinned packages the model needs to load.
    metadata : dict, optional
        Custom metadata stored in MLmodel.
    mlflow_model : mlflow.models.Model, optional
        The model configuration to add the flavors to, as in MLflow flavors.

    Raises
    ------
    InvalidParameterError
        If an argument is invalid; nothing is written.
    UnsupportedEstimatorError
        If the estimator cannot be saved or explained as requested.
    AdditivityError
        If an exact explainer's attributions do not add up to the model output.
    """
    prepared = _prepared or _prepare(
        estimator,
        background_data,
        explainers,
        shap_method,
        background_size,
        shap_orderings,
        max_shap_orderings,
        top_k,
        seed,
        serialization_format,
        signature,
        input_example,
    )
    path = Path(path)
    _validate_and_prepare_target_save_path(str(path))
    _write_model(
        prepared,
        path,
        mlflow_model,
        serialization_format,
        skops_trusted_types,
        pip_requirements,
        extra_pip_requirements,
        metadata,
    )


def log_model(
    estimator: Any,
    name: str,
    background_data: pd.DataFrame,
    explainers: str | tuple[str, ...] = ("shap",),
    shap_method: str = "auto",
    background_size: int = 100,
    shap_orderings: int = 10,
    max_shap_orderings: int = 100,
    top_k: int = 0,
    seed: int = 0,
    serialization_format: str = "auto",
    skops_trusted_types: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example: pd.DataFrame | None = None,
    registered_model_name: str | None = None,
    await_registration_for: int = 300,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    **kwargs: Any,
) -> ModelInfo:
    """Log an estimator with its SHAP explainer as an MLflow model of the active run.

    Takes the arguments of :func:`save_model`, plus those below. Every argument is checked,
    and the explainer built and tested for additivity, before anything is logged.

    Parameters
    ----------
    name : str
        Name of the logged model.
    registered_model_name : str, optional
        Also register the model under this name, creating it if needed.
    await_registration_for : int
        Seconds to wait for the registered version to be ready.
    **kwargs
        Passed to :meth:`mlflow.models.Model.log` (``run_id``, ``tags``, ``params``, ``step``).

    Returns
    -------
    mlflow.models.model.ModelInfo
        With ``model_uri`` to load the model and ``registered_model_version`` when registered.

    Examples
    --------
    >>> info = log_model(pipeline, name="credit_model", background_data=X_train,
    ...                  registered_model_name="credit")  # doctest: +SKIP
    >>> scored = mlflow.pyfunc.load_model(info.model_uri).predict(X_new)  # doctest: +SKIP
    """
    prepared = _prepare(
        estimator,
        background_data,
        explainers,
        shap_method,
        background_size,
        shap_orderings,
        max_shap_orderings,
        top_k,
        seed,
        serialization_format,
        signature,
        input_example,
    )
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=sys.modules[__name__],
        registered_model_name=registered_model_name,
        await_registration_for=await_registration_for,
        metadata=metadata,
        estimator=estimator,
        background_data=background_data,
        serialization_format=serialization_format,
        skops_trusted_types=skops_trusted_types,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        _prepared=prepared,
        **kwargs,
    )


class LoadedModel:
    """A loaded explainable model: MLflow's pyfunc model with strict request parameters.

    MLflow's pyfunc layer drops parameters and input columns that the signature does not
    declare, with only a log warning. ``predict`` here rejects both instead.

    Attributes
    ----------
    pyfunc_model : mlflow.pyfunc.PyFuncModel
    engine : ExplanationEngine
        The estimator, features and explainers behind ``predict``.
    """

    def __init__(self, pyfunc_model: PyFuncModel) -> None:
        self.pyfunc_model = pyfunc_model
        self.engine: ExplanationEngine = pyfunc_model.unwrap_python_model().engine

    @property
    def metadata(self) -> Model:
        """The model's MLmodel configuration."""
        return self.pyfunc_model.metadata

    @property
    def config(self) -> dict[str, Any]:
        """The ``explainable_model`` flavor configuration."""
        return self.metadata.flavors[FLAVOR_NAME]

    def predict(self, data: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Return predictions and attributions, one row per input row, in input order.

        Raises
        ------
        InvalidParameterError
            If a parameter is unknown, mistyped or out of range.
        InvalidInputError
            If the input's columns or values do not fit the model.
        """
        self.engine.options(params, strict=True)
        if isinstance(data, pd.DataFrame):
            check_columns(data, self.engine.features)
        return self.pyfunc_model.predict(data, params=params)

    def explain(self, data: pd.DataFrame, seed: int = 0) -> Attributions:
        """Return SHAP attributions of shape (n_rows, n_features, n_outputs) and base values."""
        return self.engine.explain(data, seed=seed)


def load_model(model_uri: str, dst_path: str | None = None) -> LoadedModel:
    """Load an explainable model from any MLflow model URI.

    Parameters
    ----------
    model_uri : str
        ``runs:/``, ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, a path, or any URI
        that MLflow accepts.
    dst_path : str, optional
        Local directory to download the model to.

    Raises
    ------
    ModelIntegrityError
        If a model file is missing or changed, or the estimator may not be unpickled.
    ExplainableModelError
        If the URI points to a model that this library did not save.
    """
    pyfunc_model = mlflow.pyfunc.load_model(model_uri, dst_path=dst_path)
    if FLAVOR_NAME not in pyfunc_model.metadata.flavors:
        raise ExplainableModelError(
            f"The model at {model_uri!r} has no {FLAVOR_NAME!r} flavor; load it with mlflow.pyfunc.load_model."
        )
    return LoadedModel(pyfunc_model)
