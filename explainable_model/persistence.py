"""Files of a saved model: the estimator, the explainers' state and the SHA-256 manifest.

Layout inside the MLflow model directory::

    artifacts/estimator/          the estimator as an mlflow.sklearn model (loadable alone)
    artifacts/explainer_state/    features.json, explainers.json, background.parquet, lime.json

No explainer object is pickled: explainers are rebuilt from these files when the model loads,
so a model keeps loading across ``shap`` releases.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from sklearn.pipeline import Pipeline

from explainable_model.estimators import final_estimator, preprocessor
from explainable_model.exceptions import ModelIntegrityError, UnsupportedEstimatorError
from explainable_model.features import FeatureSpec, restore_dtypes
from explainable_model.native import is_booster_model, load_booster, save_booster

logger = logging.getLogger(__name__)

ESTIMATOR_ARTIFACT = "estimator"
STATE_ARTIFACT = "explainer_state"
SKOPS = "skops"
CLOUDPICKLE = "cloudpickle"
SERIALIZATION_FORMATS = ("auto", SKOPS, CLOUDPICKLE)

_FEATURES_FILE = "features.json"
_EXPLAINERS_FILE = "explainers.json"
_BACKGROUND_FILE = "background.parquet"
_LIME_FILE = "lime.json"
_COMPOSITION_FILE = "composition.json"
# Files that MLflow writes or rewrites after the model is saved; they are not in the manifest.
_UNLISTED = {"MLmodel", "registered_model_meta", "environment_variables.txt"}


# Classes from these packages are library code, not the model author's, so skops may build
# them. Functions are never trusted this way: skops can call what it loads.
_LIBRARY_PACKAGES = ("numpy", "scipy", "sklearn")


def _is_library_class(name: str) -> bool:
    module_name, _, attribute = name.rpartition(".")
    if module_name.split(".")[0] not in _LIBRARY_PACKAGES:
        return False
    try:
        value = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(value, type)


def _skops_trusted_types(estimator: Any, extra: list[str] | None) -> list[str]:
    """Return the types skops must trust to load ``estimator``: library classes and ``extra``.

    skops 0.16 reports even scikit-learn's own ``Tree`` and ``numpy.dtype`` as untrusted.
    Any other type stays untrusted unless the caller lists it, and then the estimator cannot
    load with pickle deserialization disabled, since the list is read from the model itself.
    """
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    trusted = [name for name in untrusted if _is_library_class(name)]
    return sorted(set(trusted) | set(extra or []))


def _load_skops_without_pickle(path: Path) -> Any:
    """Load a skops estimator when MLFLOW_ALLOW_PICKLE_DESERIALIZATION is false.

    MLflow 3.17 refuses skops as well in that case, because a crafted model could list any
    type as trusted. Here the model's list is accepted only if every entry is a library class.
    """
    import skops.io

    conf = Model.load(str(path / "MLmodel")).flavors["sklearn"]
    trusted = conf.get("skops_trusted_types") or []
    rejected = [name for name in trusted if not _is_library_class(name)]
    if rejected:
        raise ModelIntegrityError(
            f"The estimator's skops file trusts types outside scikit-learn, NumPy and SciPy {rejected[:5]}; "
            "with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false they are not loaded. Set it to true only "
            "for models from a trusted source."
        )
    return skops.io.load(path / conf["pickled_model"], trusted=trusted)


def _write_estimator(
    estimator: Any, path: Path, serialization_format: str, requirements: list[str], trusted: list[str] | None
) -> None:
    # A Pipeline's preprocessing, saved apart from a booster, has no predict, so MLflow
    # warns that it logs no python_function flavor for it; that is expected here.
    sklearn_logger = logging.getLogger("mlflow.sklearn")
    level = sklearn_logger.level
    if not hasattr(estimator, "predict"):
        sklearn_logger.setLevel(logging.ERROR)
    try:
        _save_sklearn(estimator, path, serialization_format, requirements, trusted)
    finally:
        sklearn_logger.setLevel(level)


def _save_sklearn(
    estimator: Any, path: Path, serialization_format: str, requirements: list[str], trusted: list[str] | None
) -> None:
    mlflow.sklearn.save_model(
        estimator,
        str(path),
        serialization_format=serialization_format,
        pip_requirements=requirements,
        skops_trusted_types=trusted,
    )


def save_estimator(
    estimator: Any,
    path: Path,
    serialization_format: str,
    requirements: list[str],
    check_rows: pd.DataFrame,
    skops_trusted_types: list[str] | None = None,
) -> str:
    """Save ``estimator`` as an mlflow.sklearn model at ``path`` and return the format used.

    ``"auto"`` tries skops, which loads without unpickling, and falls back to cloudpickle
    when skops cannot represent the estimator (a lambda in a FunctionTransformer, say). The
    saved estimator is loaded back and must predict ``check_rows`` exactly as the original,
    so a model that cannot be loaded fails here, not when it is served.

    Raises
    ------
    UnsupportedEstimatorError
        If no format can save the estimator, or the loaded copy predicts differently.
    """
    formats = [SKOPS, CLOUDPICKLE] if serialization_format == "auto" else [serialization_format]
    last_error: Exception | None = None
    for fmt in formats:
        try:
            trusted = _skops_trusted_types(estimator, skops_trusted_types) if fmt == SKOPS else None
            _write_estimator(estimator, path, fmt, requirements, trusted)
        except (
            MlflowException,
            TypeError,
            ValueError,
            AttributeError,
            NotImplementedError,
            pickle.PicklingError,
        ) as err:
            last_error = err
            shutil.rmtree(path, ignore_errors=True)
            if fmt == SKOPS and len(formats) > 1:
                logger.warning(
                    "skops cannot save %s (%s); saving it with cloudpickle, which needs "
                    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true to load.",
                    type(estimator).__name__,
                    str(err).splitlines()[0],
                )
            continue
        _check_round_trip(estimator, path, fmt, check_rows)
        return fmt
    raise UnsupportedEstimatorError(
        f"Could not save {type(estimator).__name__} with serialization_format={serialization_format!r}: "
        f"{last_error}. Try serialization_format='cloudpickle', or pass skops_trusted_types for skops."
    ) from last_error


def _outputs(estimator: Any, rows: pd.DataFrame) -> np.ndarray:
    # A Pipeline's preprocessing, saved apart from a booster, has no predict.
    output = estimator.predict(rows) if hasattr(estimator, "predict") else estimator.transform(rows)
    return np.asarray(output.toarray() if hasattr(output, "toarray") else output)


def _check_round_trip(estimator: Any, path: Path, fmt: str, rows: pd.DataFrame) -> None:
    if fmt != SKOPS and not MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get():
        logger.warning("Pickle deserialization is disabled, so the %s estimator was not loaded back to check it.", fmt)
        return
    _compare_outputs(estimator, load_estimator(path, fmt), rows, fmt)


def _compare_outputs(estimator: Any, loaded: Any, rows: pd.DataFrame, fmt: str) -> None:
    expected = _outputs(estimator, rows)
    received = _outputs(loaded, rows)
    # Forests predicting on several threads add tree outputs in any order, so float
    # predictions of one model can differ in the last bits between two calls.
    if expected.dtype.kind == "f":
        same = np.allclose(expected, received, rtol=1e-12, atol=1e-12, equal_nan=True)
    else:
        same = np.array_equal(expected, received)
    if not same:
        raise UnsupportedEstimatorError(
            f"The estimator saved with {fmt} predicts differently after loading; it cannot be saved "
            "faithfully. Try another serialization_format."
        )


def load_estimator(path: Path, serialization_format: str) -> Any:
    """Load the estimator saved by :func:`save_estimator`.

    Raises
    ------
    ModelIntegrityError
        If the estimator was pickled and ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is false.
    """
    pickle_allowed = MLFLOW_ALLOW_PICKLE_DESERIALIZATION.get()
    if serialization_format == SKOPS and not pickle_allowed:
        return _load_skops_without_pickle(path)
    if not pickle_allowed:
        raise ModelIntegrityError(
            f"This model's estimator is stored with {serialization_format}, and loading it runs "
            "pickle, which MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false forbids. Set it to true only "
            "for models from a trusted source, or save the model again with a skops-compatible "
            "estimator."
        )
    return mlflow.sklearn.load_model(str(path))


def save_any_estimator(
    estimator: Any,
    path: Path,
    serialization_format: str,
    requirements: list[str],
    check_rows: pd.DataFrame,
    skops_trusted_types: list[str] | None = None,
) -> dict[str, Any]:
    """Save a scikit-learn estimator, or a booster with its preprocessing, and describe the formats.

    A Pipeline ending in an XGBoost or LightGBM booster is stored in two parts: the steps before
    it as an mlflow.sklearn model in ``preprocessor/``, and the booster in its native format in
    ``booster/``. Anything else is one mlflow.sklearn model.

    Returns
    -------
    dict
        ``serialization_format`` of the scikit-learn part (None when there is none) and
        ``booster`` (``"xgboost"``, ``"lightgbm"`` or None), as :func:`load_any_estimator` reads them.
    """
    final = final_estimator(estimator)
    if not is_booster_model(final):
        whole = save_estimator(estimator, path, serialization_format, requirements, check_rows, skops_trusted_types)
        return {"serialization_format": whole, "booster": None}

    path.mkdir(parents=True)
    steps = preprocessor(estimator)
    fmt: str | None = None
    if steps is not None:
        fmt = save_estimator(
            steps, path / "preprocessor", serialization_format, requirements, check_rows, skops_trusted_types
        )
    save_booster(final, path / "booster")
    (path / _COMPOSITION_FILE).write_text(json.dumps({"final_step": _final_step_name(estimator)}))
    description = {"serialization_format": fmt, "booster": final.facts.library}
    _compare_outputs(estimator, load_any_estimator(path, description), check_rows, final.facts.library)
    return description


def _final_step_name(estimator: Any) -> str | None:
    return estimator.steps[-1][0] if isinstance(estimator, Pipeline) else None


def load_any_estimator(path: Path, description: dict[str, Any]) -> Any:
    """Load what :func:`save_any_estimator` saved, given the description it returned."""
    if not description.get("booster"):
        return load_estimator(path, description["serialization_format"])
    booster = load_booster(path / "booster")
    if description.get("serialization_format") is None:
        return booster
    steps = load_estimator(path / "preprocessor", description["serialization_format"])
    final_step = json.loads((path / _COMPOSITION_FILE).read_text())["final_step"]
    return Pipeline([*steps.steps, (final_step, booster)])


def write_state(
    path: Path,
    features: list[FeatureSpec],
    explainers: dict[str, Any],
    background: pd.DataFrame,
    lime_state: dict[str, Any],
) -> None:
    """Write the explainers' state: feature specs, settings, background sample and LIME statistics."""
    path.mkdir(parents=True)
    (path / _FEATURES_FILE).write_text(json.dumps([spec.to_dict() for spec in features], indent=2))
    (path / _EXPLAINERS_FILE).write_text(json.dumps(explainers, indent=2, sort_keys=True))
    background.to_parquet(path / _BACKGROUND_FILE, index=False)
    (path / _LIME_FILE).write_text(json.dumps(lime_state, allow_nan=False))


def read_state(path: Path) -> tuple[list[FeatureSpec], dict[str, Any], pd.DataFrame, dict[str, Any] | None]:
    """Read what :func:`write_state` wrote, with the background in the training dtypes."""
    features = [FeatureSpec.from_dict(item) for item in json.loads((path / _FEATURES_FILE).read_text())]
    explainers = json.loads((path / _EXPLAINERS_FILE).read_text())
    background = restore_dtypes(pd.read_parquet(path / _BACKGROUND_FILE), features)
    lime_path = path / _LIME_FILE
    lime_state = json.loads(lime_path.read_text()) if lime_path.is_file() else None
    return features, explainers, background, lime_state


def _listed_files(root: Path) -> list[Path]:
    files = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(names):
            relative = Path(directory, name).relative_to(root)
            if relative.as_posix() not in _UNLISTED and not name.endswith(".pyc"):
                files.append(relative)
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_manifest(root: Path) -> dict[str, str]:
    """Return the SHA-256 of every file of the model, keyed by its relative POSIX path."""
    return {relative.as_posix(): _sha256(root / relative) for relative in _listed_files(root)}


def verify_manifest(root: Path, manifest: dict[str, str]) -> None:
    """Check every file named in ``manifest`` against its SHA-256.

    The manifest detects corruption and accidental change. It does not stop someone who can
    rewrite the model's files, since they can rewrite the manifest too.

    Raises
    ------
    ModelIntegrityError
        Naming the first file that is missing or whose content changed.
    """
    for relative, expected in sorted(manifest.items()):
        path = root / relative
        if not path.is_file():
            raise ModelIntegrityError(
                f"Model file {relative!r} is missing from {root}; the model is incomplete. "
                "Download or log the model again."
            )
        if _sha256(path) != expected:
            raise ModelIntegrityError(
                f"Model file {relative!r} in {root} does not match its SHA-256 in the manifest; "
                "it was changed after the model was saved. Download or log the model again."
            )
