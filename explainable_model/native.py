"""XGBoost and LightGBM models behind the scikit-learn interface that the rest of the library uses.

An XGBoost or LightGBM estimator (its scikit-learn wrapper or a bare ``Booster``) is turned into
a :class:`BoosterClassifier` or :class:`BoosterRegressor` that holds only the booster and a few
facts about it (task, classes, feature names). Boosters are stored in their libraries' native
formats, never pickled, and the exact TreeSHAP values come from the libraries' own
multithreaded C++ (XGBoost's ``pred_contribs``, LightGBM's ``pred_contrib``).

Both libraries are optional: they are imported only when such a model is used, and a missing
one raises an error naming the extra to install.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.pipeline import Pipeline

from explainable_model.exceptions import UnsupportedEstimatorError
from explainable_model.transforms import to_dense

XGBOOST = "xgboost"
LIGHTGBM = "lightgbm"
_BOOSTER_FILES = {XGBOOST: "model.ubj", LIGHTGBM: "model.txt"}
_FACTS_FILE = "booster.json"
# Characters that LightGBM replaces by "_" in feature names taken from a DataFrame.
_LIGHTGBM_UNSAFE = re.compile(r"\s")

# Regression objectives whose prediction is the raw margin. Others (Poisson, gamma, Tweedie)
# predict exp(margin), so their attributions are in margin (log) units.
_IDENTITY_OBJECTIVES = {
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:absoluteerror",
    "reg:pseudohubererror",
    "reg:quantileerror",
    "regression",
    "regression_l1",
    "huber",
    "fair",
    "quantile",
    "mape",
}


def require(library: str) -> ModuleType:
    """Import ``xgboost`` or ``lightgbm``, or raise naming the extra to install."""
    try:
        return importlib.import_module(library)
    except ImportError as err:
        raise UnsupportedEstimatorError(
            f"This model needs {library}, which is not installed; install explainable_model[{library}]."
        ) from err


def library_of(estimator: Any) -> str | None:
    """Return ``"xgboost"`` or ``"lightgbm"`` for their estimators and boosters, else None."""
    module = type(estimator).__module__.split(".")[0]
    return module if module in (XGBOOST, LIGHTGBM) else None


@dataclass(frozen=True)
class BoosterFacts:
    """What a booster alone does not say: the task, the class labels and the input columns."""

    library: str
    task: str
    classes: list[Any] | None
    feature_names: list[str]
    objective: str
    # False for a booster fitted on an array, as the last step of a Pipeline usually is; its
    # feature names are then generated and it is given arrays.
    named_features: bool = True

    @property
    def identity_link(self) -> bool:
        return self.objective in _IDENTITY_OBJECTIVES


class _BoosterModel(BaseEstimator):
    """Predicts with a native booster; see :func:`to_booster_model`."""

    def __init__(self, booster: Any, facts: BoosterFacts) -> None:
        self.booster = booster
        self.facts = facts
        self._threads: dict[str, int] = {}
        # A copy of the XGBoost booster that predicts on one thread, made when first needed.
        self._single_thread_booster: Any = None

    def set_threads(self, n_threads: int) -> None:
        """Limit the threads that the booster predicts and explains with."""
        if self.facts.library == XGBOOST:
            self.booster.set_param({"nthread": n_threads})
        else:
            self._threads = {"num_threads": n_threads}

    def _thread_option(self, n_rows: int, explain: bool) -> dict[str, int]:
        """Return LightGBM's thread option for ``n_rows`` rows; see :meth:`_booster_for`."""
        return {"num_threads": 1} if _single_threaded(n_rows, explain) else self._threads

    def _booster_for(self, n_rows: int, explain: bool) -> Any:
        """Return the XGBoost booster to use for ``n_rows`` rows.

        Waking OpenMP threads costs more than small inputs take to score on one thread. One row
        of 30 features through 200 trees of depth 6 took 0.13 ms on one thread and 0.4 ms on
        two, so small inputs use a single-threaded copy of the booster.
        """
        if not _single_threaded(n_rows, explain):
            return self.booster
        if self._single_thread_booster is None:
            single = self.booster.copy()
            single.set_param({"nthread": 1})
            self._single_thread_booster = single
        return self._single_thread_booster

    def __sklearn_is_fitted__(self) -> bool:
        return self.booster is not None

    def fit(self, X: Any, y: Any = None) -> _BoosterModel:
        # scikit-learn checks that an estimator has fit; this one wraps an already fitted booster.
        raise NotImplementedError("A booster model wraps a fitted booster; fit the XGBoost or LightGBM model instead.")

    @property
    def feature_names_in_(self) -> np.ndarray:
        return np.asarray(self.facts.feature_names, dtype=object)

    @property
    def n_features_in_(self) -> int:
        return len(self.facts.feature_names)

    def _frame(self, X: Any) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X
        return pd.DataFrame(to_dense(X), columns=self.facts.feature_names)

    def _predict(self, X: Any, explain: bool = False, **options: Any) -> np.ndarray:
        frame = self._frame(X) if self.facts.named_features else to_dense(X)
        n_rows = frame.shape[0]
        if self.facts.library == LIGHTGBM:
            return np.asarray(self.booster.predict(frame, **self._thread_option(n_rows, explain), **options))
        booster = self._booster_for(n_rows, explain)
        array = _numeric_array(frame)
        if array is not None and not options:
            # In-place prediction skips building a DMatrix, as XGBoost's own scikit-learn
            # wrapper does, and returns the same values.
            return np.asarray(booster.inplace_predict(array))
        xgboost = require(XGBOOST)
        if array is not None:
            threads = 1 if booster is self._single_thread_booster else None
            matrix = xgboost.DMatrix(array, feature_names=self.booster.feature_names, nthread=threads)
        else:
            matrix = xgboost.DMatrix(frame, enable_categorical=True)
        return np.asarray(booster.predict(matrix, **options))

    def margin(self, X: Any) -> np.ndarray:
        """Return the raw output before the link: shape (n_rows,) or (n_rows, n_classes)."""
        option = {"output_margin": True} if self.facts.library == XGBOOST else {"raw_score": True}
        return self._predict(X, **option).astype("float64")

    def contributions(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Return exact TreeSHAP values in margin units, computed by the library itself.

        Returns
        -------
        values : numpy.ndarray of shape (n_rows, n_features, n_outputs)
        base_values : numpy.ndarray of shape (n_rows, n_outputs)
        """
        option = {"pred_contribs": True} if self.facts.library == XGBOOST else {"pred_contrib": True}
        raw = self._predict(X, explain=True, **option).astype("float64")
        n_rows, n_features = raw.shape[0], self.n_features_in_
        # XGBoost: (n_rows, n_features + 1) or (n_rows, n_classes, n_features + 1).
        # LightGBM: (n_rows, n_features + 1) or (n_rows, n_classes * (n_features + 1)).
        if raw.ndim == 2:
            raw = raw.reshape(n_rows, -1, n_features + 1)
        values = np.transpose(raw[:, :, :n_features], (0, 2, 1))
        return values, raw[:, :, n_features]


# Largest inputs scored on one thread. TreeSHAP contributions cost about 1.5 ms per row, so a
# second thread pays off from two rows on. Predictions cost microseconds per row, so up to 16
# rows stay on one thread (measured with XGBoost 3.2 and LightGBM 4.7, 200 trees of depth 6).
_SINGLE_THREAD_CONTRIBUTION_ROWS = 1
_SINGLE_THREAD_PREDICTION_ROWS = 16


def _single_threaded(n_rows: int, explain: bool) -> bool:
    return n_rows <= (_SINGLE_THREAD_CONTRIBUTION_ROWS if explain else _SINGLE_THREAD_PREDICTION_ROWS)


def _numeric_array(data: pd.DataFrame | np.ndarray) -> np.ndarray | None:
    """Return all-numeric data as a float32 array, or None for a frame with other dtypes."""
    if isinstance(data, np.ndarray):
        return data.astype("float32", copy=False) if data.dtype.kind in "biuf" else None
    if all(dtype.kind in "biuf" for dtype in data.dtypes):
        # XGBoost converts a frame to a DMatrix through pandas per column, which took about
        # 10 ms for one row of 30 columns. The float32 array contains the same values.
        return data.to_numpy(dtype="float32", na_value=np.nan)
    return None


class BoosterClassifier(ClassifierMixin, _BoosterModel):
    """A native XGBoost or LightGBM classifier with predict, predict_proba and decision_function."""

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.facts.classes)

    def predict_proba(self, X: Any) -> np.ndarray:
        probabilities = self._predict(X).astype("float64")
        if probabilities.ndim == 1:
            probabilities = np.column_stack([1.0 - probabilities, probabilities])
        return probabilities

    def decision_function(self, X: Any) -> np.ndarray:
        return self.margin(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class BoosterRegressor(RegressorMixin, _BoosterModel):
    """A native XGBoost or LightGBM regressor.

    ``decision_function`` returns the margin, which equals the prediction for objectives with
    an identity link and is its logarithm for Poisson, gamma and Tweedie objectives.
    """

    def predict(self, X: Any) -> np.ndarray:
        return self._predict(X).astype("float64")

    def decision_function(self, X: Any) -> np.ndarray:
        return self.margin(X)


def _xgboost_facts(estimator: Any, in_pipeline: bool) -> tuple[Any, BoosterFacts]:
    xgboost = require(XGBOOST)
    booster = estimator if isinstance(estimator, xgboost.Booster) else estimator.get_booster()
    best = getattr(booster, "best_iteration", None)
    if not isinstance(estimator, xgboost.Booster) and best is not None:
        # The scikit-learn wrapper predicts with the trees up to the best iteration only.
        booster = booster[: best + 1]
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    if objective.startswith(("binary:", "multi:")):
        if objective not in ("binary:logistic", "multi:softprob"):
            raise UnsupportedEstimatorError(
                f"XGBoost objective {objective!r} does not give class probabilities; train with "
                "'binary:logistic' or 'multi:softprob'."
            )
        n_classes = int(
            getattr(estimator, "n_classes_", 0)
            or json.loads(booster.save_config())["learner"]["learner_model_param"]["num_class"]
            or 2
        )
        n_classes = max(n_classes, 2)
        task = "binary" if n_classes == 2 else "multiclass"
        classes = [_plain(c) for c in getattr(estimator, "classes_", range(n_classes))]
    else:
        task, classes = "regression", None
    names = booster.feature_names
    if names is None and not in_pipeline:
        raise UnsupportedEstimatorError(
            "The XGBoost model has no feature names; fit it on a pandas DataFrame so columns can be matched by name."
        )
    if names is None:
        generated = [f"f{i}" for i in range(booster.num_features())]
        return booster, BoosterFacts(XGBOOST, task, classes, generated, objective, named_features=False)
    return booster, BoosterFacts(XGBOOST, task, classes, list(names), objective)


def _lightgbm_facts(estimator: Any, in_pipeline: bool) -> tuple[Any, BoosterFacts]:
    lightgbm = require(LIGHTGBM)
    booster = estimator if isinstance(estimator, lightgbm.Booster) else estimator.booster_
    objective = str(booster.params.get("objective") or booster.dump_model()["objective"]).split(" ")[0]
    n_classes = int(booster.params.get("num_class", 1) or 1)
    if objective.startswith(("binary", "multiclass", "softmax")) and objective not in ("multiclassova",):
        n_classes = max(n_classes, 2)
        task = "binary" if n_classes == 2 else "multiclass"
        classes = [_plain(c) for c in getattr(estimator, "classes_", range(n_classes))]
    elif objective.startswith(("multiclassova", "cross_entropy", "lambdarank", "rank_xendcg")):
        raise UnsupportedEstimatorError(
            f"LightGBM objective {objective!r} is not supported; use 'binary', 'multiclass' or a regression objective."
        )
    else:
        task, classes = "regression", None
    # LightGBM names the columns of an array Column_0, Column_1 and so on.
    named = not all(name == f"Column_{i}" for i, name in enumerate(booster.feature_name()))
    if not named and not in_pipeline:
        raise UnsupportedEstimatorError(
            "The LightGBM model has no feature names; fit it on a pandas DataFrame so columns can be matched by name."
        )
    # LightGBM replaces spaces and special characters in the booster's own feature names, so the
    # scikit-learn wrapper's feature_names_in_ keeps the names the caller sends.
    names = [str(name) for name in getattr(estimator, "feature_names_in_", booster.feature_name())]
    facts = BoosterFacts(LIGHTGBM, task, classes, names, objective, named_features=named)
    return booster, facts


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def to_booster_model(estimator: Any, in_pipeline: bool = False) -> Any:
    """Return ``estimator`` with an XGBoost or LightGBM final step replaced by a booster model.

    Other estimators are returned unchanged. A Pipeline keeps its other steps.

    Raises
    ------
    UnsupportedEstimatorError
        If the booster's objective is not a regression, binary or multiclass one.
    """
    if isinstance(estimator, Pipeline):
        name, final = estimator.steps[-1]
        converted = to_booster_model(final, in_pipeline=len(estimator.steps) > 1)
        if converted is final:
            return estimator
        return Pipeline([*estimator.steps[:-1], (name, converted)])
    library = library_of(estimator)
    if library is None:
        return estimator
    if library == XGBOOST:
        booster, facts = _xgboost_facts(estimator, in_pipeline)
    else:
        booster, facts = _lightgbm_facts(estimator, in_pipeline)
    model_class = BoosterRegressor if facts.task == "regression" else BoosterClassifier
    return model_class(booster, facts)


def adopt_feature_names(estimator: Any, columns: list[str]) -> bool:
    """Give a LightGBM booster the caller's column names when it only knows sanitized ones.

    LightGBM stores a pandas column such as ``"petal length (cm)"`` as ``"petal_length_(cm)"``,
    so the booster cannot match the caller's columns by name. When ``columns``, sanitized the
    same way, equal the booster's names in order, the booster takes ``columns`` as its names.

    Returns
    -------
    bool
        Whether the names were adopted.
    """
    if not is_booster_model(estimator) or estimator.facts.library != LIGHTGBM:
        return False
    if [_LIGHTGBM_UNSAFE.sub("_", name) for name in columns] != estimator.facts.feature_names:
        return False
    estimator.facts = replace(estimator.facts, feature_names=list(columns))
    return True


def is_booster_model(estimator: Any) -> bool:
    """Return whether ``estimator`` is a :class:`BoosterClassifier` or :class:`BoosterRegressor`."""
    return isinstance(estimator, _BoosterModel)


def save_booster(model: Any, path: Path) -> None:
    """Write the booster in its native format and its facts as JSON into a new directory."""
    path.mkdir(parents=True)
    booster_file = path / _BOOSTER_FILES[model.facts.library]
    model.booster.save_model(str(booster_file))
    (path / _FACTS_FILE).write_text(json.dumps(asdict(model.facts), indent=2))


def load_booster(path: Path) -> Any:
    """Read what :func:`save_booster` wrote."""
    facts = BoosterFacts(**json.loads((path / _FACTS_FILE).read_text()))
    library = require(facts.library)
    booster_file = str(path / _BOOSTER_FILES[facts.library])
    if facts.library == XGBOOST:
        booster = library.Booster()
        booster.load_model(booster_file)
    else:
        booster = library.Booster(model_file=booster_file)
    model_class = BoosterRegressor if facts.task == "regression" else BoosterClassifier
    return model_class(booster, facts)
