"""Save, log and load explainable models with MLflow's conventions."""

from __future__ import annotations

import logging
import sys
import tempfile
import threading
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import shap
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc import PyFuncModel
from mlflow.utils.model_utils import _validate_and_prepare_target_save_path

from explainable_model._version import __version__
from explainable_model.engine import ExplanationEngine
from explainable_model.estimators import final_estimator
from explainable_model.exceptions import ExplainableModelError
from explainable_model.explainers import Attributions
from explainable_model.features import check_columns
from explainable_model.model import FLAVOR_NAME
from explainable_model.native import is_booster_model
from explainable_model.params import DEFAULT_MAX_ROWS
from explainable_model.persistence import (
    ESTIMATOR_ARTIFACT,
    STATE_ARTIFACT,
    build_manifest,
    save_any_estimator,
    write_state,
)
from explainable_model.preparation import Prepared, SaveOptions, prepare
from explainable_model.report_builder import build_report, report_options
from explainable_model.shap_explanation import to_shap_explanation

logger = logging.getLogger(__name__)

# Loads run one at a time in a process. skops reads the estimator's NumPy arrays, whose headers
# numpy parses with ast.literal_eval, and CPython 3.11 can raise "SystemError: AST constructor
# recursion depth mismatch" when threads build ASTs at once (CPython issue gh-106905 reports it
# from a threaded application). Two promotions loading their candidates in threads hit it.
_LOAD_LOCK = threading.Lock()

# Run artifact folder of the explanation report that log_model logs.
REPORT_ARTIFACT_PATH = "explanations"

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


def default_requirements(estimator: Any = None) -> list[str]:
    """Return the pip requirements of a saved model: the packages it loads, pinned.

    XGBoost or LightGBM is added when ``estimator`` ends in one of their boosters.
    """
    names = list(_REQUIRED_DISTRIBUTIONS)
    if estimator is not None and is_booster_model(final_estimator(estimator)):
        names.append(final_estimator(estimator).facts.library)
    return [f"{name}=={importlib_metadata.version(name)}" for name in names]


def _flavor_config(prepared: Prepared, formats: dict[str, Any], manifest: dict[str, str]) -> dict[str, Any]:
    engine = prepared.engine
    return {
        "library_version": __version__,
        "task": engine.task,
        "classes": engine.classes,
        "features": [spec.to_dict() for spec in prepared.features],
        "explainers": {
            "shap": {"method": prepared.method, "units": engine.units, "exact": engine.explainer.exact},
            "lime": {key: value for key, value in prepared.lime_explainer.state()["settings"].items()},
            "defaults": engine.settings.to_dict(),
            "background_rows": len(prepared.background),
        },
        "attribution_units": engine.units,
        "additivity": {"max_error": prepared.additivity_error, "rows": prepared.additivity_rows},
        "estimator": {
            "class": f"{type(prepared.estimator).__module__}.{type(prepared.estimator).__name__}",
            "path": f"artifacts/{ESTIMATOR_ARTIFACT}",
            **formats,
        },
        "manifest": manifest,
    }


def _write_model(
    prepared: Prepared,
    path: Path,
    mlflow_model: Model | None,
    serialization_format: str,
    skops_trusted_types: list[str] | None,
    pip_requirements: list[str] | None,
    extra_pip_requirements: list[str] | None,
    metadata: dict[str, Any] | None,
) -> None:
    requirements = default_requirements(prepared.estimator) if pip_requirements is None else list(pip_requirements)
    with tempfile.TemporaryDirectory() as staging:
        estimator_dir = Path(staging, ESTIMATOR_ARTIFACT)
        state_dir = Path(staging, STATE_ARTIFACT)
        formats = save_any_estimator(
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
            prepared.lime_explainer.state(),
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
    mlflow_model.add_flavor(FLAVOR_NAME, **_flavor_config(prepared, formats, manifest))
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
    lime_settings: dict[str, Any] | None = None,
    max_num_samples: int = 20_000,
    top_k: int = 0,
    seed: int = 0,
    serialization_format: str = "auto",
    shap_n_jobs: int | None = None,
    output_space: str = "raw",
    max_rows: int | None = DEFAULT_MAX_ROWS,
    skops_trusted_types: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example: pd.DataFrame | None = None,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    mlflow_model: Model | None = None,
    _prepared: Prepared | None = None,
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
        Explainers run by ``predict`` unless a request says otherwise: any of ``"shap"`` and
        ``"lime"``, or ``()``. The state of both is always stored, so a request may ask for
        either.
    shap_method : {"auto", "tree", "linear", "permutation"}
        ``"auto"`` picks exact TreeSHAP for tree models, exact linear SHAP for linear ones
        and sampled permutation SHAP for the rest.
    background_size : int
        Rows of background data stored with the model.
    shap_orderings : int
        Feature orderings sampled per row by permutation SHAP, by default.
    max_shap_orderings : int
        Largest ``shap_orderings`` a request may ask for.
    lime_settings : dict, optional
        Fields of :class:`explainable_model.explainers.lime.LimeSettings` other than ``mode``:
        ``discretize_continuous``, ``discretizer``, ``kernel_width``, ``feature_selection``,
        ``num_features`` (default: 10, or the number of features if smaller), ``num_samples``
        (default 5000), ``sample_around_instance``, ``max_batch_rows``.
    max_num_samples : int
        Largest LIME ``num_samples`` a request may ask for.
    top_k : int
        Reason columns returned by default.
    seed : int
        Seed of the background sample and of sampling explainers, by default.
    output_space : {"raw", "probability"}
        Units of classifier attributions. ``"raw"`` explains the model's raw output: the
        probability for forests, the margin (log-odds) for boosting and logistic models.
        ``"probability"`` explains class probabilities: exact for tree models through
        interventional TreeSHAP with the background data, checked for additivity here, and
        estimated by permutation SHAP for models that use it. Linear SHAP rejects it.
    max_rows : int or None
        Largest number of rows in one request to ``explainable-model serve``, which rejects a
        larger request with HTTP 400; None means no limit. In-process ``predict`` and batch
        scoring do not apply it.
    shap_n_jobs : int, optional
        Processes that exact TreeSHAP of scikit-learn trees spreads a large request over, and
        threads of XGBoost and LightGBM; all cores by default. The ``EXPLAINABLE_MODEL_N_JOBS``
        environment variable overrides it where the model is loaded: set it to the cores per
        worker when several server or batch workers load the model.
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
    prepared = _prepared or prepare(
        estimator,
        background_data,
        SaveOptions(
            explainers=explainers,
            shap_method=shap_method,
            background_size=background_size,
            shap_orderings=shap_orderings,
            max_shap_orderings=max_shap_orderings,
            lime_settings=dict(lime_settings or {}),
            max_num_samples=max_num_samples,
            top_k=top_k,
            seed=seed,
            serialization_format=serialization_format,
            shap_n_jobs=shap_n_jobs,
            output_space=output_space,
            max_rows=max_rows,
        ),
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
    lime_settings: dict[str, Any] | None = None,
    max_num_samples: int = 20_000,
    top_k: int = 0,
    seed: int = 0,
    serialization_format: str = "auto",
    shap_n_jobs: int | None = None,
    output_space: str = "raw",
    max_rows: int | None = DEFAULT_MAX_ROWS,
    skops_trusted_types: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example: pd.DataFrame | None = None,
    registered_model_name: str | None = None,
    await_registration_for: int = 300,
    pip_requirements: list[str] | None = None,
    extra_pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    log_report: bool | dict[str, Any] = True,
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
    log_report : bool or dict
        Also log the explanation report of :func:`explainable_model.report` under the run's
        ``explanations/`` artifacts (``explanations/report.html`` and the files it brings
        together), built from the stored background sample. A dict sets the report's options
        (``sample_rows``, ``explained_class``, ``lime``, ``max_display``, ``seed``, ``title``).
        It adds about 1 second to the call for the credit example's model (docs/benchmarks.md).
        With False, or when the model is logged without a run, no report is logged.
        :func:`save_model` writes no report.
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
    prepared = prepare(
        estimator,
        background_data,
        SaveOptions(
            explainers=explainers,
            shap_method=shap_method,
            background_size=background_size,
            shap_orderings=shap_orderings,
            max_shap_orderings=max_shap_orderings,
            lime_settings=dict(lime_settings or {}),
            max_num_samples=max_num_samples,
            top_k=top_k,
            seed=seed,
            serialization_format=serialization_format,
            shap_n_jobs=shap_n_jobs,
            output_space=output_space,
            max_rows=max_rows,
        ),
        signature,
        input_example,
    )
    options = report_options(log_report) if log_report is not False else None
    if options is not None and mlflow.active_run() is None and kwargs.get("run_id") is None:
        logger.warning("No run is active, so the model %r is logged without its explanation report.", name)
        options = None
    with tempfile.TemporaryDirectory() as report_dir:
        if options is not None:
            # Built before anything is logged, so a report that fails logs nothing.
            build_report(prepared.engine, prepared.background, report_dir, options, f"logged model {name!r}")
        info = Model.log(
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
        if options is not None:
            _log_report(info, report_dir)
    return info


def _log_report(info: ModelInfo, report_dir: str) -> None:
    if info.run_id is None:
        logger.warning("Model %s was logged without a run, so its explanation report is not logged.", info.model_uri)
        return
    mlflow.MlflowClient().log_artifacts(info.run_id, report_dir, REPORT_ARTIFACT_PATH)
    logger.info("Logged the explanation report to run %s under %s/.", info.run_id, REPORT_ARTIFACT_PATH)


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

    def explanation(self, data: pd.DataFrame, explained_class: str = "auto", seed: int = 0) -> shap.Explanation:
        """Return the SHAP attributions of ``predict`` as a ``shap.Explanation``, for shap's plots.

        Parameters
        ----------
        data : pandas.DataFrame
            Rows to explain, as for ``predict``.
        explained_class : str
            As the ``explained_class`` request parameter; with ``"all"`` the values have shape
            (n_rows, n_features, n_classes) and ``output_names`` are the class labels.
        seed : int
            As the ``seed`` request parameter.

        Returns
        -------
        shap.Explanation
            Values equal to the ``shap:`` columns of ``predict``, base values equal to
            ``shap_base_value``, the rows' raw values as ``data`` and the raw feature names.
            The attribution units are ``self.engine.units``.
        """
        params = {"explainers": "shap", "explained_class": explained_class, "seed": seed}
        return to_shap_explanation(self.predict(data, params=params), data)


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
    with _LOAD_LOCK:
        pyfunc_model = mlflow.pyfunc.load_model(model_uri, dst_path=dst_path)
    if FLAVOR_NAME not in pyfunc_model.metadata.flavors:
        raise ExplainableModelError(
            f"The model at {model_uri!r} has no {FLAVOR_NAME!r} flavor; load it with mlflow.pyfunc.load_model."
        )
    return LoadedModel(pyfunc_model)
