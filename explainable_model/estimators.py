"""What an estimator predicts: its task, its classes and its output in attribution units."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from explainable_model.exceptions import UnsupportedEstimatorError

REGRESSION = "regression"
BINARY = "binary"
MULTICLASS = "multiclass"

# Attribution units. "log_odds" is the margin of a binary model before its sigmoid, "logit" the
# per-class margin of a multiclass model before its softmax, "margin" a decision function that
# is not a calibrated log-odds (a linear SVM, for instance).
TARGET = "target"
PROBABILITY = "probability"
LOG_ODDS = "log_odds"
LOGIT = "logit"
MARGIN = "margin"


def final_estimator(estimator: Any) -> Any:
    """Return the last step of a Pipeline, or the estimator itself."""
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def preprocessor(estimator: Any) -> Any | None:
    """Return the steps of a Pipeline before its last one, or None for a bare estimator."""
    if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
        return estimator[:-1]
    return None


def check_fitted(estimator: Any) -> None:
    """Raise :class:`UnsupportedEstimatorError` unless ``estimator`` is a fitted predictor."""
    if not hasattr(estimator, "predict"):
        raise UnsupportedEstimatorError(
            f"{type(estimator).__name__} has no predict method; pass a fitted scikit-learn estimator or Pipeline."
        )
    try:
        check_is_fitted(estimator)
    except NotFittedError as err:
        raise UnsupportedEstimatorError(
            f"{type(estimator).__name__} is not fitted; call fit() before saving it."
        ) from err
    except TypeError:
        # check_is_fitted raises TypeError for objects that are not scikit-learn estimators;
        # those are judged by whether they predict, below.
        pass


def detect_task(estimator: Any) -> tuple[str, list[Any] | None]:
    """Return the task (regression, binary or multiclass) and the class labels."""
    final = final_estimator(estimator)
    if is_classifier(final) or hasattr(final, "classes_"):
        classes = list(getattr(estimator, "classes_", getattr(final, "classes_", [])))
        if np.ndim(classes) != 1 or len(classes) < 2:
            raise UnsupportedEstimatorError(
                f"{type(final).__name__} has classes_ {classes!r}; single-label classifiers "
                "with at least two classes are supported."
            )
        return (BINARY if len(classes) == 2 else MULTICLASS), [_plain(c) for c in classes]
    if is_regressor(final):
        return REGRESSION, None
    raise UnsupportedEstimatorError(
        f"{type(final).__name__} is neither a classifier nor a regressor by scikit-learn's estimator tags; "
        "explainable_model explains regressors and binary or multiclass classifiers."
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def model_output(estimator: Any, frame: pd.DataFrame, units: str, task: str) -> np.ndarray:
    """Return the model output in ``units``.

    Returns
    -------
    numpy.ndarray of shape (n_rows, n_outputs)
        ``n_outputs`` is 1 for regression and for binary classifiers (the positive class, the
        second entry of ``classes_``), and the number of classes for multiclass ones.
    """
    if units == TARGET:
        output = np.asarray(estimator.predict(frame), dtype="float64")
    elif units == PROBABILITY:
        output = np.asarray(estimator.predict_proba(frame), dtype="float64")
        if task == BINARY:
            output = output[:, 1]
    else:
        output = np.asarray(estimator.decision_function(frame), dtype="float64")
    if output.ndim == 1:
        output = output[:, None]
    if output.ndim != 2:
        raise UnsupportedEstimatorError(
            f"Expected one output per row or per class, got an array of shape {output.shape}; "
            "multi-output estimators are not supported."
        )
    return output


def n_outputs(task: str, classes: list[Any] | None) -> int:
    """Return how many outputs are explained: one, or one per class for multiclass."""
    return len(classes) if task == MULTICLASS and classes else 1
