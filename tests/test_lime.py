"""LIME engine: oracles against the lime package, sampling distribution, determinism, state.

The oracle is lime 0.2.0.1 (``lime.lime_base.LimeBase`` and ``lime.lime_tabular``). Both get
the same perturbation samples, so weights, intercepts, local predictions and scores must
agree to 1e-8.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from lime.discretize import DecileDiscretizer, QuartileDiscretizer
from lime.lime_base import LimeBase
from lime.lime_tabular import LimeTabularExplainer
from scipy import stats
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from explainable_model.exceptions import (
    InvalidInputError,
    InvalidParameterError,
    ModelIntegrityError,
    UnsupportedEstimatorError,
)
from explainable_model.explainers.lime import LimeExplainer, fit_local_models, kernel_weights
from explainable_model.explainers.lime_sampling import CategoricalStatistics, NumericStatistics
from explainable_model.features import describe_features
from tests.helpers import credit_pipeline

TOLERANCE = 1e-8
SELECTIONS = ["none", "forward_selection", "highest_weights", "lasso_path", "auto"]
CASES = ["numeric_classifier", "categorical_pipeline", "regressor"]


class Case:
    """A fitted model with its training frame, feature specs and explained rows."""

    def __init__(self, name, model, training, mode, rows):
        self.name = name
        self.model = model
        self.training = training
        self.features = describe_features(training)
        self.mode = mode
        self.rows = rows

    def predict(self, frame):
        if self.mode == "classification":
            return self.model.predict_proba(frame)
        return self.model.predict(frame)

    @property
    def label(self):
        return 1 if self.mode == "classification" else 0


@pytest.fixture(scope="module")
def cases(credit_xy):
    built = {}

    x, y = make_classification(n_samples=400, n_features=5, n_informative=3, random_state=0)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(5)])
    model = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0).fit(frame, y)
    built["numeric_classifier"] = Case("numeric_classifier", model, frame, "classification", frame.iloc[:3])

    features, target = credit_xy
    columns = ["Seniority", "Home", "Time", "Age", "Marital", "Records", "Job", "Income", "Amount"]
    complete = features[columns].assign(Status=target).dropna().iloc[:800].reset_index(drop=True)
    credit = complete[columns]
    model = credit_pipeline(credit, complete["Status"], LogisticRegression(max_iter=1000), scale=True)
    built["categorical_pipeline"] = Case("categorical_pipeline", model, credit, "classification", credit.iloc[:3])

    x, y = make_regression(n_samples=400, n_features=5, n_informative=4, noise=5.0, random_state=0)
    frame = pd.DataFrame(x, columns=[f"r{i}" for i in range(5)])
    model = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(frame, y + 0.05 * y**2)
    built["regressor"] = Case("regressor", model, frame, "regression", frame.iloc[:3])
    return built


def build_explainer(case, **settings):
    settings.setdefault("num_samples", 600)
    return LimeExplainer.from_training_data(case.training, case.features, case.mode, **settings)


def lime_kernel(width):
    return lambda distances: np.sqrt(np.exp(-(distances**2) / width**2))


def coefficient_vector(local_exp, n_features):
    vector = np.zeros(n_features)
    for feature, coefficient in local_exp:
        vector[feature] = coefficient
    return vector


def decoder_for_lime(explainer, case):
    """Return lime's usual predict_fn workaround: decode a numeric array into the raw frame."""

    def predict(array):
        columns = {}
        for i, (stats_i, spec) in enumerate(zip(explainer.statistics, case.features, strict=True)):
            if isinstance(stats_i, NumericStatistics):
                columns[spec.name] = array[:, i]
            else:
                categories = np.array(stats_i.values, dtype=object)
                columns[spec.name] = pd.Series(categories[array[:, i].astype(int)]).astype(spec.dtype)
        return case.predict(pd.DataFrame(columns))

    return predict


# (a) Oracle: lime fitted on the same samples.


@pytest.mark.parametrize("feature_selection", SELECTIONS)
@pytest.mark.parametrize("discretize", [True, False], ids=["discretized", "continuous"])
@pytest.mark.parametrize("case_name", CASES)
def test_fit_matches_lime_base(cases, case_name, discretize, feature_selection):
    case = cases[case_name]
    explainer = build_explainer(
        case, discretize_continuous=discretize, feature_selection=feature_selection, num_features=3
    )
    result = explainer.explain(case.rows, case.predict, labels=case.label, seed=7)

    neighborhood = explainer.sample(case.rows, seed=7)
    n_rows, n_samples, n_features = neighborhood.data.shape
    outputs = np.asarray(case.predict(explainer.model_input(case.rows, neighborhood))).reshape(n_rows, n_samples, -1)
    base = LimeBase(lime_kernel(explainer.settings.kernel_width))
    for r in range(n_rows):
        intercept, local_exp, score, local_prediction = base.explain_instance_with_data(
            np.ascontiguousarray(neighborhood.data[r]),
            outputs[r],
            neighborhood.distances[r],
            case.label,
            3,
            feature_selection=feature_selection,
        )
        coefficients = coefficient_vector(local_exp, n_features)
        np.testing.assert_allclose(result.coefficients[r], coefficients, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(result.weights[r], coefficients * neighborhood.data[r, 0], rtol=0, atol=TOLERANCE)
        assert result.selected[r].sum() == len(local_exp)
        assert result.intercept[r] == pytest.approx(intercept, abs=TOLERANCE)
        assert result.local_prediction[r] == pytest.approx(local_prediction[0], abs=TOLERANCE)
        assert result.score[r] == pytest.approx(score, abs=TOLERANCE)


@pytest.mark.parametrize("discretize", [True, False], ids=["discretized", "continuous"])
@pytest.mark.parametrize("case_name", CASES)
def test_explain_matches_lime_tabular(cases, case_name, discretize, monkeypatch):
    """lime's explain_instance, given our samples, scales, weighs and fits like the engine."""
    case = cases[case_name]
    explainer = build_explainer(case, discretize_continuous=discretize, num_features=4)
    result = explainer.explain(case.rows, case.predict, labels=case.label, seed=3)
    neighborhood = explainer.sample(case.rows, seed=3)

    categorical = [i for i, s in enumerate(explainer.statistics) if isinstance(s, CategoricalStatistics)]
    lime_explainer = LimeTabularExplainer(
        explainer.encode(case.training),
        mode=case.mode,
        categorical_features=categorical,
        discretize_continuous=discretize,
        random_state=0,
    )
    for r in range(len(case.rows)):
        inverse = np.ascontiguousarray(neighborhood.values[r])
        # lime's data contains raw numbers for numeric features without discretization and the
        # 0/1 indicators everywhere else.
        lime_data = np.ascontiguousarray(neighborhood.data[r]).copy()
        if not discretize:
            numeric = [i for i in range(inverse.shape[1]) if i not in categorical]
            lime_data[:, numeric] = inverse[:, numeric]
        monkeypatch.setattr(
            lime_explainer, "_LimeTabularExplainer__data_inverse", lambda row, n, d=lime_data, v=inverse: (d, v)
        )
        explanation = lime_explainer.explain_instance(
            inverse[0], decoder_for_lime(explainer, case), labels=(case.label,), num_features=4, num_samples=600
        )
        # lime stores a regression's coefficients under key 1 and their negation under key 0.
        coefficients = coefficient_vector(explanation.local_exp[1], inverse.shape[1])
        np.testing.assert_allclose(result.coefficients[r], coefficients, rtol=0, atol=TOLERANCE)
        assert result.intercept[r] == pytest.approx(explanation.intercept[case.label], abs=TOLERANCE)
        assert result.local_prediction[r] == pytest.approx(explanation.local_pred[0], abs=TOLERANCE)
        assert result.score[r] == pytest.approx(explanation.score, abs=TOLERANCE)


def test_fit_matches_sklearn_ridge():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4, 300, 6))
    targets = data @ np.arange(6.0) + rng.normal(size=(4, 300))
    weights = rng.uniform(0.1, 1.0, size=(4, 300))
    models = fit_local_models(data, targets, weights, num_features=6, feature_selection="none")
    for r in range(4):
        ridge = Ridge(alpha=1.0).fit(data[r], targets[r], sample_weight=weights[r])
        np.testing.assert_allclose(models.coefficients[r], ridge.coef_, rtol=0, atol=TOLERANCE)
        assert models.intercept[r] == pytest.approx(ridge.intercept_, abs=TOLERANCE)
        assert models.score[r] == pytest.approx(
            ridge.score(data[r], targets[r], sample_weight=weights[r]), abs=TOLERANCE
        )


def test_fit_constant_feature_gets_zero():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 2, size=(2, 200, 4)).astype(float)
    data[:, :, 2] = 1.0
    data[:, 0, :] = 1.0
    targets = data[:, :, 0] * 2 + rng.normal(size=(2, 200))
    weights = kernel_weights(np.sqrt((1 - data).sum(axis=2)), 1.5)
    base = LimeBase(lambda d: d)
    models = fit_local_models(data, targets, weights, num_features=3, feature_selection="forward_selection")
    for r in range(2):
        _, local_exp, score, _ = base.explain_instance_with_data(
            data[r], targets[r][:, None], weights[r], 0, 3, "forward_selection"
        )
        np.testing.assert_allclose(models.coefficients[r], coefficient_vector(local_exp, 4), rtol=0, atol=TOLERANCE)
        assert models.coefficients[r, 2] == 0.0
        assert models.score[r] == pytest.approx(score, abs=TOLERANCE)


def test_weights_add_up_to_local_prediction(cases):
    case = cases["regressor"]
    for discretize in (True, False):
        result = build_explainer(case, discretize_continuous=discretize).explain(case.rows, case.predict, seed=0)
        np.testing.assert_allclose(result.intercept + result.weights.sum(axis=1), result.local_prediction, atol=1e-10)


# (b) Sampling distribution.


def test_statistics_match_lime_discretizers(cases):
    case = cases["categorical_pipeline"]
    for name, discretizer_class in (("quartile", QuartileDiscretizer), ("decile", DecileDiscretizer)):
        explainer = build_explainer(case, discretizer=name)
        encoded = explainer.encode(case.training)
        categorical = [i for i, s in enumerate(explainer.statistics) if isinstance(s, CategoricalStatistics)]
        reference = discretizer_class(encoded, categorical, [s.name for s in explainer.statistics])
        lime_explainer = LimeTabularExplainer(encoded, categorical_features=categorical, discretizer=name)
        for i, stats_i in enumerate(explainer.statistics):
            if isinstance(stats_i, CategoricalStatistics):
                assert lime_explainer.feature_values[i] == list(range(len(stats_i.values)))
                expected = np.asarray(stats_i.counts) / sum(stats_i.counts)
                np.testing.assert_allclose(lime_explainer.feature_frequencies[i], expected, rtol=1e-12)
                continue
            np.testing.assert_allclose(reference.means[i], stats_i.bin_means, rtol=1e-12)
            np.testing.assert_allclose(reference.stds[i], stats_i.bin_stds, rtol=1e-12)
            np.testing.assert_allclose(reference.mins[i], stats_i.bin_mins, rtol=1e-12)
            np.testing.assert_allclose(reference.maxs[i], stats_i.bin_maxs, rtol=1e-12)
            occupied = [b for b, count in enumerate(stats_i.bin_counts) if count]
            assert lime_explainer.feature_values[i] == occupied
            expected = np.asarray([stats_i.bin_counts[b] for b in occupied]) / len(case.training)
            np.testing.assert_allclose(lime_explainer.feature_frequencies[i], expected, rtol=1e-12)


def test_statistics_match_lime_scaler(cases):
    case = cases["numeric_classifier"]
    explainer = build_explainer(case, discretize_continuous=False)
    lime_explainer = LimeTabularExplainer(case.training.to_numpy(), discretize_continuous=False)
    np.testing.assert_allclose([s.mean for s in explainer.statistics], lime_explainer.scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose([s.scale for s in explainer.statistics], lime_explainer.scaler.scale_, rtol=1e-12)
    assert explainer.settings.kernel_width == pytest.approx(np.sqrt(5) * 0.75)


@pytest.mark.parametrize("discretizer", ["quartile", "decile"])
def test_sampler_bins_and_truncated_normals(cases, discretizer):
    case = cases["categorical_pipeline"]
    explainer = build_explainer(case, discretizer=discretizer)
    row = case.rows.iloc[[1]]
    neighborhood = explainer.sample(row, seed=11, num_samples=30_001)
    values = neighborhood.values[0, 1:]
    row_values = neighborhood.values[0, 0]
    for i, stats_i in enumerate(explainer.statistics):
        if not isinstance(stats_i, NumericStatistics):
            continue
        bins = stats_i.bin_of(values[:, i])
        observed = np.bincount(bins, minlength=stats_i.n_bins + 1)[: stats_i.n_bins]
        expected = np.asarray(stats_i.bin_counts) / sum(stats_i.bin_counts) * len(values)
        occupied = expected > 0
        assert observed[~occupied].sum() == 0, stats_i.name
        assert stats.chisquare(observed[occupied], expected[occupied]).pvalue > 1e-3, stats_i.name

        indicator = bins == stats_i.bin_of(row_values[i : i + 1])[0]
        np.testing.assert_array_equal(neighborhood.data[0, 1:, i], indicator.astype(float))
        for b in np.flatnonzero(observed >= 300):
            low, high = stats_i.bin_mins[b], stats_i.bin_maxs[b]
            mean, std = stats_i.bin_means[b], stats_i.bin_stds[b]
            in_bin = values[bins == b, i]
            assert in_bin.min() >= low, (stats_i.name, b)
            assert in_bin.max() <= high, (stats_i.name, b)
            if low == high:
                continue
            distribution = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
            assert stats.kstest(in_bin, distribution.cdf).pvalue > 1e-3, (stats_i.name, b)


def test_single_value_bin_draws_its_value():
    # The lowest quartile equals the minimum, so bin 0 contains only the value 3. lime 0.2.0.1
    # draws 0 there; the engine draws the value itself.
    training = pd.DataFrame({"a": np.r_[np.full(40, 3.0), np.arange(60.0) + 4]})
    explainer = LimeExplainer.from_training_data(training, describe_features(training), "regression")
    stats_a = explainer.statistics[0]
    assert stats_a.bin_mins[0] == stats_a.bin_maxs[0] == 3.0
    neighborhood = explainer.sample(training.iloc[[50]], seed=0, num_samples=2001)
    drawn = neighborhood.values[0, 1:, 0]
    in_first_bin = stats_a.bin_of(drawn) == 0
    assert in_first_bin.mean() == pytest.approx(0.4, abs=0.05)
    np.testing.assert_array_equal(drawn[in_first_bin], 3.0)


def test_sampler_categories_follow_training_frequencies(cases):
    case = cases["categorical_pipeline"]
    for discretize in (True, False):
        explainer = build_explainer(case, discretize_continuous=discretize)
        neighborhood = explainer.sample(case.rows.iloc[[0]], seed=5, num_samples=20_001)
        for i, stats_i in enumerate(explainer.statistics):
            if not isinstance(stats_i, CategoricalStatistics):
                continue
            codes = neighborhood.values[0, 1:, i].astype(int)
            observed = np.bincount(codes, minlength=len(stats_i.values))
            expected = np.asarray(stats_i.counts) / sum(stats_i.counts) * len(codes)
            assert stats.chisquare(observed, expected).pvalue > 1e-3, stats_i.name
            same = (codes == neighborhood.values[0, 0, i]).astype(float)
            np.testing.assert_array_equal(neighborhood.data[0, 1:, i], same)


@pytest.mark.parametrize("around_instance", [False, True])
def test_sampler_continuous_is_scaled_normal(cases, around_instance):
    case = cases["numeric_classifier"]
    explainer = build_explainer(case, discretize_continuous=False, sample_around_instance=around_instance)
    neighborhood = explainer.sample(case.rows.iloc[[2]], seed=9, num_samples=20_001)
    for i, stats_i in enumerate(explainer.statistics):
        drawn = neighborhood.values[0, 1:, i]
        center = neighborhood.values[0, 0, i] if around_instance else stats_i.mean
        assert stats.kstest(drawn, stats.norm(loc=center, scale=stats_i.scale).cdf).pvalue > 1e-3, stats_i.name
        np.testing.assert_allclose(
            neighborhood.data[0, :, i], (neighborhood.values[0, :, i] - stats_i.mean) / stats_i.scale
        )


def test_sampler_distances_and_first_sample(cases):
    case = cases["categorical_pipeline"]
    for discretize in (True, False):
        explainer = build_explainer(case, discretize_continuous=discretize)
        neighborhood = explainer.sample(case.rows, seed=1)
        expected = np.sqrt(np.square(neighborhood.data - neighborhood.data[:, :1, :]).sum(axis=2))
        np.testing.assert_allclose(neighborhood.distances, expected, atol=1e-12)
        assert (neighborhood.distances[:, 0] == 0).all()
        model_input = explainer.model_input(case.rows, neighborhood)
        firsts = model_input.iloc[:: neighborhood.data.shape[1]].reset_index(drop=True)
        pd.testing.assert_frame_equal(firsts, case.rows.reset_index(drop=True), check_dtype=False)
        # Text columns of pandas' str dtype are sent as object columns of the same strings.
        expected = {}
        for spec in case.features:
            expected[spec.name] = str(case.rows[spec.name].dtype)
            if spec.kind == "numeric":
                expected[spec.name] = "float64"
            elif expected[spec.name] == "str":
                expected[spec.name] = "object"
        assert list(model_input.columns) == list(expected)
        assert model_input.dtypes.astype(str).to_dict() == expected
        assert "object" in expected.values()


# (c) Determinism.


def test_same_seed_same_result_in_any_batch(cases):
    case = cases["categorical_pipeline"]
    rows = case.training.iloc[:5]
    explainer = build_explainer(case)
    together = explainer.explain(rows, case.predict, labels=1, seed=21)
    reversed_rows = explainer.explain(rows.iloc[::-1], case.predict, labels=1, seed=21)
    small_calls = build_explainer(case, max_batch_rows=1300).explain(rows, case.predict, labels=1, seed=21)
    for field in ("weights", "intercept", "local_prediction", "score"):
        np.testing.assert_array_equal(getattr(reversed_rows, field)[::-1], getattr(together, field))
        np.testing.assert_array_equal(getattr(small_calls, field), getattr(together, field))
    for r in range(len(rows)):
        alone = explainer.explain(rows.iloc[[r]], case.predict, labels=1, seed=21)
        np.testing.assert_array_equal(alone.weights[0], together.weights[r])
        assert alone.score[0] == together.score[r]


def test_samples_depend_on_seed_and_row_only(cases):
    case = cases["numeric_classifier"]
    explainer = build_explainer(case)
    rows = case.training.iloc[:4]
    first = explainer.sample(rows, seed=4)
    again = explainer.sample(rows.iloc[[2, 0]], seed=4)
    np.testing.assert_array_equal(again.values[0], first.values[2])
    np.testing.assert_array_equal(again.values[1], first.values[0])
    other_seed = explainer.sample(rows, seed=5)
    assert not np.array_equal(other_seed.values[:, 1:], first.values[:, 1:])
    assert not np.array_equal(first.values[0, 1:], first.values[1, 1:])


def test_one_model_call_per_chunk(cases):
    case = cases["numeric_classifier"]
    explainer = build_explainer(case, num_samples=500, max_batch_rows=1000)
    calls = []

    def predict(frame):
        calls.append(len(frame))
        return case.predict(frame)

    explainer.explain(case.training.iloc[:5], predict, labels=1)
    assert calls == [1000, 1000, 500]


# State.


@pytest.mark.parametrize("discretize", [True, False], ids=["discretized", "continuous"])
def test_state_round_trip_is_identical(cases, discretize):
    case = cases["categorical_pipeline"]
    explainer = build_explainer(case, discretize_continuous=discretize, discretizer="decile", kernel_width=2.5)
    state = json.loads(json.dumps(explainer.state(), allow_nan=False))
    rebuilt = LimeExplainer.from_state(state, case.features)
    assert rebuilt.state() == explainer.state()
    first = explainer.explain(case.rows, case.predict, labels=0, seed=2)
    second = rebuilt.explain(case.rows, case.predict, labels=0, seed=2)
    for field in ("weights", "intercept", "local_prediction", "score"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))


def test_state_rejects_other_features(cases):
    case = cases["categorical_pipeline"]
    state = build_explainer(case).state()
    with pytest.raises(ModelIntegrityError, match="describes the columns"):
        LimeExplainer.from_state(state, case.features[:-1])
    with pytest.raises(ModelIntegrityError, match="version"):
        LimeExplainer.from_state({**state, "version": 99}, case.features)
    broken = json.loads(json.dumps(state))
    broken["features"][0]["bin_means"] = []
    with pytest.raises(ModelIntegrityError, match="inconsistent bin statistics"):
        LimeExplainer.from_state(broken, case.features)


# Categories and missing values.


def test_unseen_category_keeps_row_value(cases):
    case = cases["categorical_pipeline"]
    explainer = build_explainer(case)
    row = case.rows.iloc[[0]].copy()
    row["Home"] = "castle"
    home = [s.name for s in explainer.statistics].index("Home")
    neighborhood = explainer.sample(row, seed=0)
    assert neighborhood.values[0, 0, home] == -1
    assert (neighborhood.values[0, 1:, home] >= 0).all()
    np.testing.assert_array_equal(neighborhood.data[0, :, home], np.r_[1.0, np.zeros(neighborhood.data.shape[1] - 1)])
    model_input = explainer.model_input(row, neighborhood)
    assert model_input["Home"].iloc[0] == "castle"
    assert "castle" not in set(model_input["Home"].iloc[1:])

    result = explainer.explain(row, case.predict, labels=1, seed=0, num_features=9)
    assert np.isfinite(result.weights).all()
    assert result.selected[0, home]


def test_missing_values_are_their_own_bin_and_category(credit_frame):
    training = credit_frame.drop(columns="Status").iloc[:2000].reset_index(drop=True)
    features = describe_features(training)
    for spec in features:
        spec.accepts_missing = spec.name in ("Income", "Home")
    explainer = LimeExplainer.from_training_data(training, features, num_samples=20_001)
    names = [s.name for s in explainer.statistics]
    income = explainer.statistics[names.index("Income")]
    home = explainer.statistics[names.index("Home")]
    assets = explainer.statistics[names.index("Assets")]
    assert income.missing_count == training["Income"].isna().sum() > 0
    assert home.values[-1] is None
    assert home.counts[-1] == training["Home"].isna().sum()
    assert assets.missing_count == 0  # the estimator does not accept missing Assets

    row = training.iloc[[0]].copy()
    row["Income"] = np.nan
    neighborhood = explainer.sample(row, seed=3)
    income_values = neighborhood.values[0, :, names.index("Income")]
    missing_share = np.isnan(income_values[1:]).mean()
    assert missing_share == pytest.approx(income.missing_count / len(training), abs=0.01)
    np.testing.assert_array_equal(neighborhood.data[0, :, names.index("Income")], np.isnan(income_values).astype(float))
    assert not np.isnan(neighborhood.values[0, 1:, names.index("Assets")]).any()

    model_input = explainer.model_input(row, neighborhood)
    assert model_input["Income"].isna().mean() == pytest.approx(missing_share, abs=1e-3)
    assert model_input["Home"].isna().any()


def test_missing_row_value_without_discretization(credit_xy):
    features, target = credit_xy
    training = features.iloc[:1500].reset_index(drop=True)
    specs = describe_features(training)
    for spec in specs:
        spec.accepts_missing = True
    model = credit_pipeline(training, target.iloc[:1500], GradientBoostingClassifier(n_estimators=20, random_state=0))
    explainer = LimeExplainer.from_training_data(training, specs, discretize_continuous=False, num_samples=400)
    row = training.iloc[[3]].copy()
    row["Income"] = np.nan
    income = [s.name for s in specs].index("Income")
    neighborhood = explainer.sample(row, seed=0)
    assert neighborhood.data[0, 0, income] == 0.0
    assert not np.isnan(neighborhood.values[0, 1:, income]).any()
    result = explainer.explain(row, model.predict_proba, labels=1, seed=0, num_features=13)
    assert result.weights[0, income] == 0.0
    assert np.isfinite(result.weights).all()


def test_boolean_and_category_columns():
    rng = np.random.default_rng(0)
    training = pd.DataFrame(
        {
            "flag": rng.random(300) > 0.3,
            "grade": pd.Categorical(rng.choice(["a", "b", "c"], 300), categories=["a", "b", "c"]),
            "x": rng.normal(size=300),
        }
    )
    features = describe_features(training)
    explainer = LimeExplainer.from_training_data(training, features, "regression", num_samples=300)
    seen = []

    def predict(frame):
        seen.append(frame.dtypes.astype(str).tolist())
        return frame["x"].to_numpy() + frame["flag"].to_numpy() * 2.0 + (frame["grade"] == "c").to_numpy()

    result = explainer.explain(training.iloc[:2], predict, seed=0)
    assert seen[0] == ["bool", "category", "float64"]
    assert np.isfinite(result.weights).all()
    assert (result.labels == 0).all()


# Parameters and errors.


def test_default_labels(cases):
    case = cases["numeric_classifier"]
    explainer = build_explainer(case)
    result = explainer.explain(case.rows, case.predict, seed=0)
    np.testing.assert_array_equal(result.labels, case.predict(case.rows).argmax(axis=1))
    np.testing.assert_allclose(result.model_output, case.predict(case.rows).max(axis=1))


def test_infinite_training_value_is_rejected():
    training = pd.DataFrame({"a": [1.0, 2.0, np.inf], "b": ["x", "y", "x"]})
    with pytest.raises(InvalidInputError, match="Column 'a' has an infinite value"):
        LimeExplainer.from_training_data(training, describe_features(training))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "ranking"}, "Invalid mode 'ranking'"),
        ({"discretizer": "entropy"}, "Invalid discretizer 'entropy'"),
        ({"feature_selection": "best"}, "Invalid feature_selection 'best'"),
        ({"kernel_width": 0}, "Invalid kernel_width 0"),
        ({"num_samples": 1}, "Invalid num_samples 1"),
        ({"num_features": 0}, "Invalid num_features 0"),
        ({"sample_size": 10}, "Unknown LIME settings"),
    ],
)
def test_invalid_settings(cases, settings, message):
    case = cases["numeric_classifier"]
    mode = settings.pop("mode", case.mode)
    with pytest.raises(InvalidParameterError, match=message):
        LimeExplainer.from_training_data(case.training, case.features, mode, **settings)


def test_invalid_requests(cases):
    case = cases["numeric_classifier"]
    explainer = build_explainer(case)
    with pytest.raises(InvalidParameterError, match="Invalid seed 1.5"):
        explainer.explain(case.rows, case.predict, seed=1.5)
    with pytest.raises(InvalidParameterError, match="Invalid label 5"):
        explainer.explain(case.rows, case.predict, labels=5)
    with pytest.raises(InvalidParameterError, match="Invalid labels"):
        explainer.explain(case.rows, case.predict, labels=[0, 1])
    with pytest.raises(InvalidParameterError, match="Invalid num_samples 1"):
        explainer.explain(case.rows, case.predict, num_samples=1)
    with pytest.raises(InvalidInputError, match="missing columns"):
        explainer.explain(case.rows.drop(columns="x0"), case.predict)
    with pytest.raises(UnsupportedEstimatorError, match="expected"):
        explainer.explain(case.rows, lambda frame: np.zeros(len(frame)))
