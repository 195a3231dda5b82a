"""Batched LIME explanations of tabular rows, with the semantics of lime's LimeTabularExplainer.

The reference is ``lime.lime_tabular.LimeTabularExplainer`` with its default kernel and
``Ridge(alpha=1)`` surrogate (lime 0.2.0.1). Unlike lime, the explainer

* takes raw rows with string categorical columns and missing values. Categories are encoded to
  integer codes for sampling and decoded back before the model is called (see
  :mod:`explainable_model.explainers.lime_sampling` for missing values and unseen categories);
* sends all perturbations of a chunk of rows to the model in one call, and fits the surrogates
  of all rows of the chunk together (see :mod:`explainable_model.explainers.lime_fit`);
* draws each row's perturbations from its own generator, derived from the request seed and the
  row's values, so a row's explanation does not depend on the batch or on global random state;
* stores its training statistics as a JSON-ready dict instead of a pickle.

Known difference from lime: for a quantile bin that contains a single value, lime's sampler
returns 0 (the value's standardized offset) instead of the value itself. This sampler
returns the value.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from explainable_model.exceptions import (
    InvalidInputError,
    InvalidParameterError,
    ModelIntegrityError,
    UnsupportedEstimatorError,
)
from explainable_model.explainers.lime_fit import (
    FEATURE_SELECTIONS,
    LocalModels,
    fit_local_models,
    kernel_weights,
    validate_feature_selection,
)
from explainable_model.explainers.lime_sampling import (
    DISCRETIZER_PERCENTILES,
    CategoricalStatistics,
    FeatureStatistics,
    Neighborhood,
    NeighborhoodSampler,
    NumericStatistics,
    compute_statistics,
    statistics_from_dict,
)
from explainable_model.explainers.permutation import row_seed
from explainable_model.features import NUMERIC, FeatureSpec, check_columns

logger = logging.getLogger(__name__)

__all__ = [
    "FEATURE_SELECTIONS",
    "LIME_MODES",
    "LimeExplainer",
    "LimeExplanation",
    "LimeSettings",
    "LocalModels",
    "Neighborhood",
    "fit_local_models",
    "kernel_weights",
]

PredictFunction = Callable[[pd.DataFrame], np.ndarray]

LIME_MODES = ("classification", "regression")
STATE_FORMAT = "explainable_model.lime"
STATE_VERSION = 1


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidParameterError(f"Invalid {name} {value!r}; expected an integer of at least {minimum}.")
    return int(value)


@dataclass(frozen=True)
class LimeSettings:
    """Settings of a LIME explainer; the names and defaults follow lime's LimeTabularExplainer.

    Attributes
    ----------
    mode : {"classification", "regression"}
        Whether the model output is class probabilities or regression values. Both are fitted
        alike. Regression accepts a 1-d output and explains column 0 by default. Classification
        explains the predicted class by default and logs a warning when the outputs do not sum
        to 1, where lime warns.
    discretize_continuous : bool
        Whether numeric features are sampled and represented by quantile bins.
    discretizer : {"quartile", "decile"}
        The quantiles that cut numeric features into bins.
    kernel_width : float or None
        Width of the exponential kernel; None means ``sqrt(n_features) * 0.75``.
    feature_selection : {"auto", "none", "forward_selection", "highest_weights", "lasso_path"}
        How the features of each surrogate are chosen; "auto" is forward selection for at most
        6 features and highest weights otherwise.
    num_features : int
        Maximum number of features per explanation, unless a request overrides it.
    num_samples : int
        Samples per explained row, the row itself included, unless a request overrides it.
    sample_around_instance : bool
        Without discretization, center numeric perturbations on the row instead of the
        training mean.
    max_batch_rows : int
        Largest number of perturbed rows sent to the model in one call. A chunk always contains
        at least one explained row, so one call gets ``num_samples`` rows when that is larger.
        A chunk also needs memory for about five float64 arrays of ``max_batch_rows * n_features``
        values for sampling, decoding and fitting.
    """

    mode: str = "classification"
    discretize_continuous: bool = True
    discretizer: str = "quartile"
    kernel_width: float | None = None
    feature_selection: str = "auto"
    num_features: int = 10
    num_samples: int = 5000
    sample_around_instance: bool = False
    max_batch_rows: int = 100_000

    def __post_init__(self) -> None:
        if self.mode not in LIME_MODES:
            raise InvalidParameterError(f"Invalid mode {self.mode!r}; expected one of {list(LIME_MODES)}.")
        if self.discretizer not in DISCRETIZER_PERCENTILES:
            raise InvalidParameterError(
                f"Invalid discretizer {self.discretizer!r}; expected one of {sorted(DISCRETIZER_PERCENTILES)}."
            )
        validate_feature_selection(self.feature_selection)
        for name in ("discretize_continuous", "sample_around_instance"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(f"Invalid {name} {getattr(self, name)!r}; expected true or false.")
        if self.kernel_width is not None:
            width = self.kernel_width
            if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
                raise InvalidParameterError(
                    f"Invalid kernel_width {width!r}; expected a finite number greater than 0, or None."
                )
        _check_int("num_features", self.num_features, 1)
        _check_int("num_samples", self.num_samples, 2)
        _check_int("max_batch_rows", self.max_batch_rows, 1)


@dataclass(frozen=True)
class LimeExplanation:
    """LIME explanations of a batch of rows, one explained output column per row.

    Attributes
    ----------
    weights : numpy.ndarray of shape (n_rows, n_features)
        Contribution of each raw feature to ``local_prediction``: the surrogate coefficient
        times the row's interpretable value, 0 for features not selected. The interpretable
        value is 1 for binned and categorical features, so there the weight equals lime's
        coefficient. For numeric features without discretization it is the standardized row
        value. ``intercept + weights.sum(axis=1)`` equals ``local_prediction``.
    coefficients : numpy.ndarray of shape (n_rows, n_features)
        Surrogate coefficients as lime reports them in ``Explanation.local_exp``; 0 for
        features not selected.
    selected : numpy.ndarray of bool, shape (n_rows, n_features)
        Features that the feature selection kept.
    intercept : numpy.ndarray of shape (n_rows,)
    local_prediction : numpy.ndarray of shape (n_rows,)
        The surrogate's prediction for the row.
    score : numpy.ndarray of shape (n_rows,)
        Weighted R² of the surrogate on the row's samples, as lime's ``Explanation.score``.
    model_output : numpy.ndarray of shape (n_rows,)
        The model's output for the row itself in the explained column.
    labels : numpy.ndarray of int, shape (n_rows,)
        The explained output column of each row.
    """

    weights: np.ndarray
    coefficients: np.ndarray
    selected: np.ndarray
    intercept: np.ndarray
    local_prediction: np.ndarray
    score: np.ndarray
    model_output: np.ndarray
    labels: np.ndarray


class LimeExplainer:
    """LIME tabular explanations of raw rows for any model output function.

    Build one with :meth:`from_training_data` at save time, store :meth:`state` as JSON and
    rebuild it with :meth:`from_state` at load time. The explainer stores no model, so
    :meth:`explain` receives the predict function.

    Parameters
    ----------
    statistics : list of NumericStatistics or CategoricalStatistics
        One entry per feature, in the order of ``features``.
    features : list of FeatureSpec
    settings : LimeSettings
        ``kernel_width`` None is resolved to ``sqrt(n_features) * 0.75``.
    n_training_rows : int
        Number of training rows the statistics come from; stored for reference.
    """

    def __init__(
        self,
        statistics: list[FeatureStatistics],
        features: list[FeatureSpec],
        settings: LimeSettings,
        n_training_rows: int,
    ) -> None:
        if [stats.name for stats in statistics] != [spec.name for spec in features]:
            raise InvalidParameterError(
                "The LIME statistics and the features name different columns: "
                f"{[stats.name for stats in statistics]} against {[spec.name for spec in features]}."
            )
        kernel_width = settings.kernel_width
        if kernel_width is None:
            kernel_width = float(np.sqrt(len(features)) * 0.75)
            settings = replace(settings, kernel_width=kernel_width)
        self.kernel_width = float(kernel_width)
        self.statistics = statistics
        self.features = features
        self.settings = settings
        self.n_training_rows = n_training_rows
        self._sampler = NeighborhoodSampler(
            statistics, features, settings.discretize_continuous, settings.sample_around_instance
        )

    @classmethod
    def from_training_data(
        cls,
        training_data: pd.DataFrame,
        features: list[FeatureSpec],
        mode: str = "classification",
        **settings: Any,
    ) -> LimeExplainer:
        """Compute the training statistics and build the explainer.

        Parameters
        ----------
        training_data : pandas.DataFrame
            Raw training rows in the training dtypes. Numeric columns may contain missing
            values, and categorical columns may be strings.
        features : list of FeatureSpec
        mode : {"classification", "regression"}
        **settings
            Any other field of :class:`LimeSettings`.

        Raises
        ------
        InvalidParameterError
            If a setting is unknown or invalid.
        InvalidInputError
            If the columns do not match ``features``, or there is no training row.
        """
        unknown = sorted(set(settings) - set(LimeSettings.__dataclass_fields__))
        if unknown:
            raise InvalidParameterError(
                f"Unknown LIME settings {unknown}; expected any of {sorted(LimeSettings.__dataclass_fields__)}."
            )
        lime_settings = LimeSettings(mode=mode, **settings)
        check_columns(training_data, features)
        statistics = compute_statistics(training_data, features, lime_settings.discretizer)
        return cls(statistics, features, lime_settings, n_training_rows=len(training_data))

    def state(self) -> dict[str, Any]:
        """Return the settings and training statistics as a JSON-serializable dict."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "settings": asdict(self.settings),
            "n_training_rows": self.n_training_rows,
            "features": [stats.to_dict() for stats in self.statistics],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], features: list[FeatureSpec]) -> LimeExplainer:
        """Rebuild the explainer that :meth:`state` returned the state of.

        Raises
        ------
        ModelIntegrityError
            If the state is malformed, has another format version, or describes other features.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ModelIntegrityError(f"The LIME state is not a {STATE_FORMAT!r} dict.")
        if state.get("version") != STATE_VERSION:
            raise ModelIntegrityError(
                f"The LIME state has version {state.get('version')!r}; this version of "
                f"explainable_model reads version {STATE_VERSION}."
            )
        try:
            settings = LimeSettings(**state["settings"])
            statistics = [statistics_from_dict(entry) for entry in state["features"]]
            n_training_rows = int(state["n_training_rows"])
        except (KeyError, TypeError, InvalidParameterError) as error:
            raise ModelIntegrityError(f"The LIME state is malformed: {error}") from error
        _check_statistics(statistics, features)
        return cls(statistics, features, settings, n_training_rows)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the rows as lime's numeric arrays: numeric values and category codes.

        A category's code is its position in ``CategoricalStatistics.values``; a value absent
        from training gets -1.

        Returns
        -------
        numpy.ndarray of shape (n_rows, n_features)
        """
        return self._sampler.encode(self._prepare_frame(frame))

    def sample(self, frame: pd.DataFrame, seed: int = 0, num_samples: int | None = None) -> Neighborhood:
        """Draw the perturbations that :meth:`explain` uses for these rows and this seed.

        Parameters
        ----------
        frame : pandas.DataFrame
            Rows in the training columns and dtypes.
        seed : int
            Request seed, any integer (taken modulo 2**64).
        num_samples : int, optional
            Samples per row, the row itself included; defaults to the setting.
        """
        frame = self._prepare_frame(frame)
        num_samples = self._num_samples(num_samples)
        return self._sampler.sample(frame, self._generators(frame, seed), num_samples)

    def model_input(self, frame: pd.DataFrame, neighborhood: Neighborhood) -> pd.DataFrame:
        """Decode a neighborhood into the raw frame that the model is called on.

        Returns
        -------
        pandas.DataFrame
            ``n_rows * n_samples`` rows ordered by row, then sample, in the training columns.
        """
        return self._sampler.model_input(self._prepare_frame(frame), neighborhood)

    def explain(
        self,
        frame: pd.DataFrame,
        predict_function: PredictFunction,
        labels: int | np.ndarray | list[int] | None = None,
        seed: int = 0,
        num_samples: int | None = None,
        num_features: int | None = None,
    ) -> LimeExplanation:
        """Explain each row's model output in one column with a weighted local linear model.

        Parameters
        ----------
        frame : pandas.DataFrame
            Rows in the training columns and dtypes (``features.coerce_frame`` output).
        predict_function : callable
            Maps a raw DataFrame to an array of shape (n_rows, n_outputs): class probabilities
            for classifiers, predicted values for regressors. A 1-d array is accepted in
            regression mode.
        labels : int, array-like of int or None
            The output column explained for each row, or one column for all rows. None
            explains column 0 in regression mode and the row's highest output (its predicted
            class) in classification mode.
        seed : int
            Request seed, any integer (taken modulo 2**64); a row's explanation depends only on the seed,
            the row and the explainer.
        num_samples, num_features : int, optional
            Override the settings for this request.

        Returns
        -------
        LimeExplanation

        Raises
        ------
        InvalidInputError
            If the columns do not match the features or there is no row.
        InvalidParameterError
            If ``seed``, ``labels``, ``num_samples`` or ``num_features`` is invalid.
        UnsupportedEstimatorError
            If ``predict_function`` returns an array of an unexpected shape.
        """
        frame = self._prepare_frame(frame)
        num_samples = self._num_samples(num_samples)
        num_features = (
            self.settings.num_features if num_features is None else _check_int("num_features", num_features, 1)
        )
        generators = self._generators(frame, seed)
        n_rows, n_features = len(frame), len(self.features)
        requested_labels = _requested_labels(labels, n_rows)

        result = {
            "weights": np.zeros((n_rows, n_features)),
            "coefficients": np.zeros((n_rows, n_features)),
            "selected": np.zeros((n_rows, n_features), dtype=bool),
            "intercept": np.zeros(n_rows),
            "local_prediction": np.zeros(n_rows),
            "score": np.zeros(n_rows),
            "model_output": np.zeros(n_rows),
            "labels": np.zeros(n_rows, dtype=np.int64),
        }
        rows_per_call = max(1, self.settings.max_batch_rows // num_samples)
        for start in range(0, n_rows, rows_per_call):
            stop = min(start + rows_per_call, n_rows)
            chunk_labels = None if requested_labels is None else requested_labels[start:stop]
            chunk = self._explain_chunk(
                frame.iloc[start:stop],
                generators[start:stop],
                predict_function,
                chunk_labels,
                num_samples,
                num_features,
            )
            for key, values in chunk.items():
                result[key][start:stop] = values
        return LimeExplanation(**result)

    def _explain_chunk(
        self,
        frame: pd.DataFrame,
        generators: list[np.random.Generator],
        predict_function: PredictFunction,
        labels: np.ndarray | None,
        num_samples: int,
        num_features: int,
    ) -> dict[str, np.ndarray]:
        n_rows = len(frame)
        neighborhood = self._sampler.sample(frame, generators, num_samples)
        model_input = self._sampler.model_input(frame, neighborhood)

        logger.debug("LIME: scoring %d perturbed rows for %d explained rows.", len(model_input), n_rows)
        outputs = self._check_outputs(predict_function(model_input), n_rows * num_samples)
        # (n_rows * n_samples, n_outputs) -> (n_rows, n_samples, n_outputs), rows in sampling order.
        outputs = outputs.reshape(n_rows, num_samples, -1)
        n_outputs = outputs.shape[2]

        if labels is None:
            labels = (
                np.zeros(n_rows, dtype=np.int64)
                if self.settings.mode == "regression"
                else outputs[:, 0, :].argmax(axis=1)
            )
        elif labels.max() >= n_outputs:
            raise InvalidParameterError(
                f"Invalid label {int(labels.max())}; the model returns {n_outputs} output columns, so "
                f"labels must be between 0 and {n_outputs - 1}."
            )
        targets = np.take_along_axis(outputs, labels[:, None, None], axis=2)[:, :, 0]

        sample_weights = kernel_weights(neighborhood.distances, self.kernel_width)
        models = fit_local_models(
            neighborhood.data, targets, sample_weights, num_features, self.settings.feature_selection
        )
        return {
            "weights": models.coefficients * neighborhood.data[:, 0, :],
            "coefficients": models.coefficients,
            "selected": models.selected,
            "intercept": models.intercept,
            "local_prediction": models.local_prediction,
            "score": models.score,
            "model_output": targets[:, 0],
            "labels": labels,
        }

    def _check_outputs(self, outputs: Any, expected_rows: int) -> np.ndarray:
        outputs = np.asarray(outputs, dtype=np.float64)
        if outputs.ndim == 1 and self.settings.mode == "regression":
            outputs = outputs[:, None]
        if outputs.ndim != 2 or outputs.shape[0] != expected_rows:
            raise UnsupportedEstimatorError(
                f"The LIME predict function returned an array of shape {outputs.shape}; expected "
                f"({expected_rows}, n_outputs)"
                + (" with class probabilities." if self.settings.mode == "classification" else ".")
            )
        if self.settings.mode == "classification" and not np.allclose(outputs.sum(axis=1), 1.0):
            # lime warns in the same case: the surrogate then explains scores, not probabilities.
            logger.warning("LIME classification outputs do not sum to 1 per row; are they probabilities?")
        return outputs

    def _prepare_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise InvalidInputError(f"Input must be a pandas DataFrame with named columns, got {type(frame).__name__}.")
        check_columns(frame, self.features)
        if len(frame) == 0:
            raise InvalidInputError("Input has no rows; send at least one row.")
        return frame[[spec.name for spec in self.features]].reset_index(drop=True)

    def _num_samples(self, num_samples: int | None) -> int:
        if num_samples is None:
            return self.settings.num_samples
        return _check_int("num_samples", num_samples, 2)

    def _generators(self, frame: pd.DataFrame, seed: int) -> list[np.random.Generator]:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise InvalidParameterError(f"Invalid seed {seed!r}; expected an integer.")
        return [row_seed(frame.iloc[i], seed) for i in range(len(frame))]


def _requested_labels(labels: int | np.ndarray | list[int] | None, n_rows: int) -> np.ndarray | None:
    if labels is None:
        return None
    array = np.asarray(labels)
    if array.ndim == 0:
        array = np.full(n_rows, array)
    if array.shape != (n_rows,) or not np.issubdtype(array.dtype, np.integer) or (array < 0).any():
        raise InvalidParameterError(
            f"Invalid labels {labels!r}; expected one non-negative integer output column, or one per row "
            f"({n_rows} rows)."
        )
    return array.astype(np.int64)


def _check_statistics(statistics: list[FeatureStatistics], features: list[FeatureSpec]) -> None:
    """Raise ModelIntegrityError unless the stored statistics fit the features and each other."""
    stored = [stats.name for stats in statistics]
    expected = [spec.name for spec in features]
    if stored != expected:
        raise ModelIntegrityError(f"The LIME state describes the columns {stored}, but the model has {expected}.")
    for stats, spec in zip(statistics, features, strict=True):
        if isinstance(stats, NumericStatistics) != (spec.kind == NUMERIC):
            raise ModelIntegrityError(
                f"The LIME state treats column {spec.name!r} as {stats.kind}, but the feature is {spec.kind}."
            )
        if isinstance(stats, NumericStatistics):
            n_bins = len(stats.boundaries) + 1
            lists = (stats.bin_means, stats.bin_stds, stats.bin_mins, stats.bin_maxs, stats.bin_counts)
            if any(len(values) != n_bins for values in lists) or sum(stats.bin_counts) + stats.missing_count <= 0:
                raise ModelIntegrityError(f"The LIME state of column {spec.name!r} has inconsistent bin statistics.")
        elif isinstance(stats, CategoricalStatistics):
            if len(stats.values) != len(stats.counts) or sum(stats.counts) <= 0:
                raise ModelIntegrityError(f"The LIME state of column {spec.name!r} has inconsistent category counts.")
