"""Training statistics of LIME tabular explanations and the perturbation sampler built on them.

The sampling distribution is the one of ``lime.lime_tabular.LimeTabularExplainer``
(lime 0.2.0.1):

* With discretization, each numeric feature is cut at training quantiles (quartiles or
  deciles, duplicated boundaries merged). A perturbation picks a bin with its training
  frequency, then draws a value from a normal distribution with the bin's training mean and
  standard deviation, truncated to the bin's bounds. The interpretable feature is 1 when the
  perturbation falls in the explained row's bin.
* Without discretization, a numeric feature is drawn from a normal distribution with the
  training mean and standard deviation (or centered on the row's value with
  ``sample_around_instance``). The interpretable feature is the standardized value.
* A categorical or boolean feature takes a training category with its training frequency.
  The interpretable feature is 1 when the perturbation equals the row's category.

Missing values are handled as follows; lime itself does not accept them.

* Quantiles, means and standard deviations are computed over the non-missing training values.
* With discretization, a missing numeric value is an extra bin after the quantile bins. It is
  sampled with the training frequency of missing values, and a sampled missing bin sends NaN
  to the model.
* Without discretization, numeric perturbations are never missing. A row whose value is
  missing keeps NaN for its own model call. Its standardized value is 0, the training mean,
  so the feature's weight for that row is 0. With ``sample_around_instance``, that row's
  perturbations are centered on the training mean.
* Missing categorical values are a category of their own.
* Missing values are sampled only for features whose ``FeatureSpec.accepts_missing`` is
  true, because other estimators raise on them. Otherwise they are left out of the
  frequencies.

A row value never seen in training, such as an unseen category, a missing value that is not
sampled or a value in an empty bin, is never drawn for a perturbation. The row keeps its own
value for its own model call. Its interpretable feature is still defined: 1 for the row and 0
for every perturbation.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from explainable_model.exceptions import InvalidInputError, InvalidParameterError
from explainable_model.features import BOOLEAN, CATEGORICAL, NUMERIC, FeatureSpec, json_value

logger = logging.getLogger(__name__)

# Percentiles that cut numeric features into bins, as lime's QuartileDiscretizer and
# DecileDiscretizer do.
DISCRETIZER_PERCENTILES: dict[str, tuple[float, ...]] = {
    "quartile": (25.0, 50.0, 75.0),
    "decile": (10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0),
}

# lime adds this to every bin's standard deviation, so that a bin whose training values are
# all equal still defines a (very narrow) truncated normal distribution.
BIN_STD_FLOOR = 1e-11

# Quantiles passed to the normal quantile function are clamped to this open interval.
_SMALLEST_QUANTILE = np.finfo(np.float64).tiny
_LARGEST_QUANTILE = 1.0 - np.finfo(np.float64).epsneg


@dataclass
class NumericStatistics:
    """Training statistics of one numeric feature.

    Attributes
    ----------
    name : str
        Column name.
    mean : float
        Mean of the non-missing training values.
    scale : float
        Standard deviation (``ddof=0``) of the non-missing training values, or 1.0 for a
        constant column, as scikit-learn's ``StandardScaler`` sets it.
    boundaries : list of float
        Sorted distinct training quantiles; a value ``x`` falls in bin
        ``numpy.searchsorted(boundaries, x, side="left")``.
    bin_means, bin_stds, bin_mins, bin_maxs : list of float
        Per bin (``len(boundaries) + 1`` entries): mean, standard deviation plus
        :data:`BIN_STD_FLOOR`, lower and upper bound of the training values in the bin. An
        empty bin has mean 0 and standard deviation :data:`BIN_STD_FLOOR`.
    bin_counts : list of int
        Training rows per bin.
    missing_count : int
        Training rows whose value is missing and that the sampler may draw; 0 when the
        estimator does not accept missing values.
    """

    name: str
    mean: float
    scale: float
    boundaries: list[float]
    bin_means: list[float]
    bin_stds: list[float]
    bin_mins: list[float]
    bin_maxs: list[float]
    bin_counts: list[int]
    missing_count: int

    kind = NUMERIC

    @property
    def n_bins(self) -> int:
        """Number of quantile bins, without the missing-value bin."""
        return len(self.boundaries) + 1

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """Return the bin index of each value; missing values get the index ``n_bins``."""
        bins = np.searchsorted(np.asarray(self.boundaries, dtype=float), values, side="left")
        return np.where(np.isnan(values), self.n_bins, bins)

    def to_dict(self) -> dict[str, Any]:
        """Return the statistics as a JSON-ready dict."""
        return {"kind": NUMERIC, **asdict(self)}


@dataclass
class CategoricalStatistics:
    """Training statistics of one categorical or boolean feature.

    Attributes
    ----------
    name : str
        Column name.
    kind : {"categorical", "boolean"}
        The feature's kind.
    values : list
        Distinct training values as JSON values, sorted, with the missing value (None) last.
        The position of a value is its integer code.
    counts : list of int
        Training rows per value.
    """

    name: str
    kind: str
    values: list[Any]
    counts: list[int]

    def code_of(self, values: np.ndarray) -> np.ndarray:
        """Return the code of each value; values absent from training get -1."""
        codes = {value: code for code, value in enumerate(self.values)}
        return np.array([codes.get(json_value(value), -1) for value in values], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Return the statistics as a JSON-ready dict."""
        return asdict(self)


FeatureStatistics = NumericStatistics | CategoricalStatistics


def statistics_from_dict(data: dict[str, Any]) -> FeatureStatistics:
    """Rebuild the statistics of one feature from :meth:`NumericStatistics.to_dict` output."""
    data = dict(data)
    if data.get("kind") == NUMERIC:
        del data["kind"]
        return NumericStatistics(**data)
    return CategoricalStatistics(**data)


def _scale_of(values: np.ndarray, mean: float) -> float:
    """Return the standard deviation, or 1.0 where ``StandardScaler`` treats the column as constant."""
    variance = float(values.var())
    n_samples = len(values)
    eps = np.finfo(np.float64).eps
    # The same bound as scikit-learn's StandardScaler, so that near-constant columns get the
    # scale 1.0 that lime's scaler gives them.
    upper_bound = n_samples * eps * variance + (n_samples * mean * eps) ** 2
    return 1.0 if variance <= upper_bound else float(np.sqrt(variance))


def _numeric_statistics(spec: FeatureSpec, column: pd.Series, percentiles: tuple[float, ...]) -> NumericStatistics:
    values = pd.to_numeric(column).to_numpy(dtype=np.float64)
    missing = np.isnan(values)
    observed = values[~missing]
    if len(observed) == 0:
        raise InvalidInputError(
            f"Column {spec.name!r} has no non-missing value in the LIME training data; LIME "
            "needs at least one to compute the feature's statistics."
        )
    if not np.isfinite(observed).all():
        raise InvalidInputError(
            f"Column {spec.name!r} has an infinite value in the LIME training data; replace it with a "
            "finite number or a missing value."
        )

    mean = float(observed.mean())
    boundaries = np.unique(np.percentile(observed, percentiles))
    bins = np.searchsorted(boundaries, observed, side="left")
    bin_means, bin_stds, bin_counts = [], [], []
    for index in range(len(boundaries) + 1):
        in_bin = observed[bins == index]
        bin_counts.append(int(len(in_bin)))
        bin_means.append(float(in_bin.mean()) if len(in_bin) else 0.0)
        bin_stds.append((float(in_bin.std()) if len(in_bin) else 0.0) + BIN_STD_FLOOR)

    n_missing = int(missing.sum())
    if n_missing and not spec.accepts_missing:
        logger.warning(
            "Column %r has %d missing training values, but the estimator does not accept missing "
            "values in it; LIME will not sample missing values for it.",
            spec.name,
            n_missing,
        )
        n_missing = 0
    return NumericStatistics(
        name=spec.name,
        mean=mean,
        scale=_scale_of(observed, mean),
        boundaries=boundaries.tolist(),
        bin_means=bin_means,
        bin_stds=bin_stds,
        bin_mins=[float(observed.min())] + boundaries.tolist(),
        bin_maxs=boundaries.tolist() + [float(observed.max())],
        bin_counts=bin_counts,
        missing_count=n_missing,
    )


def _sorted_values(values: list[Any]) -> list[Any]:
    present = [value for value in values if value is not None]
    try:
        present.sort()
    except TypeError:
        # Mixed types do not compare; any fixed order works, because codes are only labels.
        present.sort(key=lambda value: (type(value).__name__, str(value)))
    return present + ([None] if None in values else [])


def _categorical_statistics(spec: FeatureSpec, column: pd.Series) -> CategoricalStatistics:
    counter = Counter(json_value(value) for value in column.astype(object).tolist())
    if None in counter and not spec.accepts_missing:
        logger.warning(
            "Column %r has %d missing training values, but the estimator does not accept missing "
            "values in it; LIME will not sample missing values for it.",
            spec.name,
            counter[None],
        )
        del counter[None]
    if not counter:
        raise InvalidInputError(
            f"Column {spec.name!r} has no non-missing value in the LIME training data; LIME "
            "needs at least one category to sample from."
        )
    values = _sorted_values(list(counter))
    return CategoricalStatistics(
        name=spec.name,
        kind=BOOLEAN if spec.kind == BOOLEAN else CATEGORICAL,
        values=values,
        counts=[int(counter[value]) for value in values],
    )


def compute_statistics(
    training_data: pd.DataFrame, features: list[FeatureSpec], discretizer: str
) -> list[FeatureStatistics]:
    """Compute the LIME statistics of every feature from raw training rows.

    Parameters
    ----------
    training_data : pandas.DataFrame
        Raw training rows in the training dtypes, with a column per feature.
    features : list of FeatureSpec
    discretizer : {"quartile", "decile"}
        The quantiles that cut numeric features into bins.

    Returns
    -------
    list of NumericStatistics or CategoricalStatistics
        One entry per feature, in the order of ``features``.

    Raises
    ------
    InvalidParameterError
        If ``discretizer`` is unknown.
    InvalidInputError
        If a column has no value that can be sampled, or a numeric column has an infinite value.
    """
    if discretizer not in DISCRETIZER_PERCENTILES:
        raise InvalidParameterError(
            f"Invalid discretizer {discretizer!r}; expected one of {sorted(DISCRETIZER_PERCENTILES)}."
        )
    if len(training_data) == 0:
        raise InvalidInputError("The LIME training data has no rows; pass at least one training row.")
    percentiles = DISCRETIZER_PERCENTILES[discretizer]
    statistics: list[FeatureStatistics] = []
    for spec in features:
        column = training_data[spec.name]
        if spec.kind == NUMERIC:
            statistics.append(_numeric_statistics(spec, column, percentiles))
        else:
            statistics.append(_categorical_statistics(spec, column))
    return statistics


@dataclass(frozen=True)
class Neighborhood:
    """Perturbations around a batch of rows; sample 0 of each row is the row itself.

    The arrays are views of feature-major buffers, of shape (n_rows, n_features, n_samples),
    so that each feature of each row is contiguous for the sampler and the surrogate fit.

    Attributes
    ----------
    values : numpy.ndarray of shape (n_rows, n_samples, n_features)
        Numeric values for numeric features and integer codes (positions in
        ``CategoricalStatistics.values``) for categorical and boolean ones. The row's own
        value is at sample 0, with code -1 for a value absent from training.
    data : numpy.ndarray of shape (n_rows, n_samples, n_features)
        The interpretable representation that the surrogate model is fitted on. It contains 0/1
        "same bin or category as the row" indicators, and standardized values for numeric
        features without discretization.
    distances : numpy.ndarray of shape (n_rows, n_samples)
        Euclidean distance of each sample's ``data`` from the row's.
    """

    values: np.ndarray
    data: np.ndarray
    distances: np.ndarray


# Up to this many cumulative-frequency edges, counting the edges below a uniform number is
# faster than numpy.searchsorted.
_MAX_EDGES_FOR_COMPARISONS = 16


def _interval_index(upper_edges: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Return the index of the interval of ``upper_edges`` (ending at 1.0) containing each number.

    Equal consecutive edges enclose an empty interval, which is never returned.
    """
    inner = upper_edges[:-1]
    if len(inner) > _MAX_EDGES_FOR_COMPARISONS:
        return np.searchsorted(inner, uniform, side="right")
    index = np.zeros(uniform.shape, dtype=np.intp)
    for edge in inner:
        index += uniform >= edge
    return index


class _BinSampler:
    """Sampler of one discretized numeric feature, built from precomputed per-bin constants.

    One uniform number per value does both steps of lime's sampling. The interval of the
    cumulative bin frequencies it falls in picks the bin. Its relative position in that
    interval is then uniform and independent of the bin, and serves as the quantile of the
    truncated normal.
    """

    def __init__(self, stats: NumericStatistics) -> None:
        # Bins 0 .. n_bins - 1 are the quantile bins, and bin n_bins contains missing values.
        counts = np.asarray(stats.bin_counts + [stats.missing_count], dtype=np.int64)
        self.upper_edges = np.cumsum(counts) / counts.sum()
        self.lower_edges = np.concatenate([[0.0], self.upper_edges[:-1]])

        mean = np.asarray(stats.bin_means + [np.nan])
        std = np.asarray(stats.bin_stds + [1.0])
        low = np.asarray(stats.bin_mins + [np.nan])
        high = np.asarray(stats.bin_maxs + [np.nan])
        with np.errstate(invalid="ignore"):
            a = (low - mean) / std
            b = (high - mean) / std
        # Draw from the lower tail, where the normal CDF keeps its relative precision: an
        # interval lying mostly above the mean is mirrored, and the draw negated back. An
        # occupied bin's mean lies within its bounds, so after mirroring cdf_high >= 0.5.
        sign = np.where(a + b > 0, -1.0, 1.0)
        tail_a = np.where(sign > 0, a, -b)
        tail_b = np.where(sign > 0, b, -a)
        cdf_low, cdf_high = special.ndtr(tail_a), special.ndtr(tail_b)
        width = self.upper_edges - self.lower_edges
        with np.errstate(divide="ignore", invalid="ignore"):
            # The truncated normal's quantile is cdf_low + (uniform - lower_edge) * slope.
            self.slope = np.where(width > 0, (cdf_high - cdf_low) / width, 0.0)
        self.cdf_low = cdf_low
        self.mean = mean
        self.signed_std = sign * std

        # A bin whose standardized bounds coincide has a single value. lime returns the
        # standardized bound (0) there instead of the value, so this deliberately differs.
        # The missing-value bin draws NaN the same way, from its NaN mean.
        fixed = ~(a < b)
        self.mean[fixed] = low[fixed]
        self.signed_std[fixed] = 0.0
        self.cdf_low[fixed] = 0.5
        self.slope[fixed] = 0.0

    def sample(self, uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the bins and values drawn from ``uniform`` numbers in [0, 1), of its shape.

        Values lie within their bin's bounds up to rounding.
        """
        bins = _interval_index(self.upper_edges, uniform)
        # uniform >= lower_edge, so the quantile is at least cdf_low, and at most cdf_high up
        # to rounding.
        quantile = self.cdf_low[bins] + (uniform - self.lower_edges[bins]) * self.slope[bins]
        # Keep the quantile strictly inside (0, 1), so that the normal quantile function stays
        # finite. cdf_low is 0 only for a bound below -37.5 standard deviations, and cdf_high
        # is 1 only for a bound above 8.3, so the clamped draw stays inside its bin.
        np.clip(quantile, _SMALLEST_QUANTILE, _LARGEST_QUANTILE, out=quantile)
        z = special.ndtri(quantile)
        values = self.mean[bins] + self.signed_std[bins] * z
        return bins, values


def _set_indicator(data: np.ndarray, sampled: np.ndarray, row_codes: np.ndarray, squared_distances: np.ndarray) -> None:
    """Fill one feature's 0/1 "same as the row" column and add its mismatches to the distances.

    ``data`` and ``squared_distances`` have shape (n_rows, n_samples), ``sampled`` has shape
    (n_rows, n_samples - 1) and ``row_codes`` shape (n_rows,).
    """
    outside = sampled != row_codes[:, None]
    data[:, 0] = 1.0
    np.logical_not(outside, out=data[:, 1:])
    squared_distances[:, 1:] += outside


def _category_edges(counts: list[int]) -> np.ndarray:
    counts_array = np.asarray(counts, dtype=np.int64)
    return np.cumsum(counts_array) / counts_array.sum()


class NeighborhoodSampler:
    """Sampler of LIME perturbations around rows, and their decoder into model input frames.

    Parameters
    ----------
    statistics : list of NumericStatistics or CategoricalStatistics
        One entry per feature, from :func:`compute_statistics`.
    features : list of FeatureSpec
        The features, in the order of ``statistics``.
    discretize_continuous : bool
        Whether numeric features are sampled and represented by quantile bins.
    sample_around_instance : bool
        Without discretization, center numeric perturbations on the row's value instead of the
        training mean.
    """

    def __init__(
        self,
        statistics: list[FeatureStatistics],
        features: list[FeatureSpec],
        discretize_continuous: bool,
        sample_around_instance: bool,
    ) -> None:
        self.statistics = statistics
        self.features = features
        self.discretize_continuous = discretize_continuous
        self.sample_around_instance = sample_around_instance
        self._numeric = {i: stats for i, stats in enumerate(statistics) if isinstance(stats, NumericStatistics)}
        self._categorical = {i: stats for i, stats in enumerate(statistics) if isinstance(stats, CategoricalStatistics)}
        self._bin_samplers = {i: _BinSampler(stats) for i, stats in self._numeric.items()}
        self._category_edges = {i: _category_edges(stats.counts) for i, stats in self._categorical.items()}
        self._category_values = {i: _object_array(stats.values) for i, stats in self._categorical.items()}

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the rows as numbers: numeric values and category codes (-1 if unseen).

        Returns
        -------
        numpy.ndarray of shape (n_rows, n_features)
        """
        encoded = np.empty((len(frame), len(self.statistics)))
        for i, stats in enumerate(self.statistics):
            column = frame[stats.name]
            if isinstance(stats, NumericStatistics):
                encoded[:, i] = pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                encoded[:, i] = stats.code_of(column.astype(object).to_numpy())
        return encoded

    def sample(self, frame: pd.DataFrame, generators: list[np.random.Generator], num_samples: int) -> Neighborhood:
        """Draw ``num_samples - 1`` perturbations per row, row ``i`` from ``generators[i]`` only.

        Parameters
        ----------
        frame : pandas.DataFrame
            Rows to perturb, in the training dtypes.
        generators : list of numpy.random.Generator
            One generator per row.
        num_samples : int
            Samples per row, the row itself included.
        """
        n_rows, n_features = len(frame), len(self.statistics)
        row_values = self.encode(frame)
        # Feature-major buffers, (n_rows, n_features, n_samples), exposed transposed at the end.
        values = np.empty((n_rows, n_features, num_samples))
        values[:, :, 0] = row_values
        data = np.empty((n_rows, n_features, num_samples))
        squared_distances = np.zeros((n_rows, num_samples))

        uniform, normal = self._draw(generators, num_samples - 1)
        for i, stats in self._numeric.items():
            if self.discretize_continuous:
                bins, drawn = self._bin_samplers[i].sample(uniform[i])
                values[:, i, 1:] = drawn
                row_bins = stats.bin_of(row_values[:, i])
                _set_indicator(data[:, i, :], bins, row_bins, squared_distances)
            else:
                self._sample_continuous(stats, row_values[:, i], normal[i], values[:, i, :], data[:, i, :])
                squared_distances += np.square(data[:, i, :] - data[:, i, :1])
        for i in self._categorical:
            codes = _interval_index(self._category_edges[i], uniform[i])
            values[:, i, 1:] = codes
            _set_indicator(data[:, i, :], codes, row_values[:, i], squared_distances)

        return Neighborhood(
            values=values.transpose(0, 2, 1),
            data=data.transpose(0, 2, 1),
            distances=np.sqrt(squared_distances),
        )

    def _draw(
        self, generators: list[np.random.Generator], draws: int
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Draw each row's random numbers from its own generator, in a fixed order.

        Returns two dicts from feature index to an array of shape (n_rows, draws): uniform
        numbers for categorical features and binned numeric ones, standard normal numbers for
        numeric features without discretization.
        """
        numeric = list(self._numeric)
        normal_features = [] if self.discretize_continuous else numeric
        uniform_features = [i for i in range(len(self.statistics)) if i not in normal_features]
        uniform = np.empty((len(generators), len(uniform_features), draws))
        normal = np.empty((len(generators), len(normal_features), draws))
        for r, generator in enumerate(generators):
            if normal_features:
                generator.standard_normal(out=normal[r])
            generator.random(out=uniform[r])
        uniform_by_feature = {i: uniform[:, k, :] for k, i in enumerate(uniform_features)}
        normal_by_feature = {i: normal[:, k, :] for k, i in enumerate(normal_features)}
        return uniform_by_feature, normal_by_feature

    def _sample_continuous(
        self, stats: NumericStatistics, row_values: np.ndarray, normal: np.ndarray, values: np.ndarray, data: np.ndarray
    ) -> None:
        """Fill one numeric feature's ``values`` and standardized ``data``, both (n_rows, n_samples)."""
        # A missing row value is treated as the training mean, its standardized value 0.
        row_numbers = np.where(np.isnan(row_values), stats.mean, row_values)
        center = row_numbers[:, None] if self.sample_around_instance else stats.mean
        values[:, 1:] = normal * stats.scale + center
        data[:, 0] = (row_numbers - stats.mean) / stats.scale
        data[:, 1:] = (values[:, 1:] - stats.mean) / stats.scale

    def model_input(self, frame: pd.DataFrame, neighborhood: Neighborhood) -> pd.DataFrame:
        """Decode the perturbations into one raw frame in the training columns and dtypes.

        The frame has ``n_rows * n_samples`` rows ordered by row, then sample. Sample 0 of
        each row is the row exactly as given. Numeric columns are float64 even when trained as
        int64, because lime's perturbations are continuous, and columns of pandas' ``str``
        dtype are ``object`` columns of the same strings.
        """
        n_rows, n_samples, _ = neighborhood.values.shape
        numeric = [i for i, stats in enumerate(self.statistics) if isinstance(stats, NumericStatistics)]
        names = [spec.name for spec in self.features]
        # One C-ordered (n_numeric, n_rows * n_samples) copy, given to pandas as a single float
        # block without a further copy.
        block = np.ascontiguousarray(neighborhood.values[:, :, numeric].transpose(2, 0, 1)).reshape(
            len(numeric), n_rows * n_samples
        )
        for k, i in enumerate(numeric):
            block[k, ::n_samples] = pd.to_numeric(frame[names[i]]).to_numpy(dtype=np.float64, na_value=np.nan)
        result = pd.DataFrame(block.T, columns=[names[i] for i in numeric], copy=False)
        for i, (stats, spec) in enumerate(zip(self.statistics, self.features, strict=True)):
            if isinstance(stats, NumericStatistics):
                continue
            codes = neighborhood.values[:, :, i].astype(np.int64)
            # (n_rows, n_samples) object values; sample 0 keeps the row's own, possibly unseen, value.
            decoded = self._category_values[i][np.maximum(codes, 0)]
            row_values = frame[spec.name].astype(object).to_numpy()
            decoded[:, 0] = np.where(pd.isna(row_values), np.nan, row_values)
            # Inserting in feature order keeps the training column order without copying the block.
            result.insert(i, spec.name, _typed_column(decoded.reshape(-1), spec))
        return result


def _object_array(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = [np.nan if value is None else value for value in values]
    return array


def _typed_column(values: np.ndarray, spec: FeatureSpec) -> pd.Series | pd.Categorical:
    """Cast decoded object values, with missing values as NaN, to the feature's training dtype."""
    series = pd.Series(values, dtype=object)
    if spec.dtype == "str":
        # Building pandas' str array, and scikit-learn's conversion of it back to an object array,
        # took 24% to 42% of the credit Pipelines' scoring time in benchmarks/lime_speed.py.
        return series
    if spec.dtype == "category":
        return pd.Categorical(series.where(series.notna(), None), categories=spec.categories)
    if spec.kind == BOOLEAN:
        # A bool column cannot contain NaN, so a column with missing values is sent as float
        # 0/1/NaN, as features.coerce_frame does for request rows.
        if series.isna().any():
            return series.astype("float64")
        return series.astype("bool")
    return series.astype(spec.dtype)
