"""LIME through a saved model's predict: columns, classes, reasons, parameters, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor

import explainable_model as em
from explainable_model.output import parse_column
from tests.helpers import credit_pipeline

LIME = {"explainers": "lime", "num_samples": 300}


def lime_columns(frame, label=None):
    return [
        name for name in frame.columns if parse_column(name).kind == "lime" and parse_column(name).class_label == label
    ]


@pytest.fixture(scope="module")
def credit_model_path(tmp_path_factory, credit_xy):
    X, y = credit_xy
    pipeline = credit_pipeline(X, y, GradientBoostingClassifier(n_estimators=30, random_state=0))
    path = tmp_path_factory.mktemp("lime") / "model"
    em.save_model(pipeline, path, background_data=X, explainers=("shap", "lime"))
    return path


@pytest.fixture(scope="module")
def credit_model(credit_model_path):
    return em.load_model(str(credit_model_path))


def test_lime_columns_add_up_to_local_prediction(credit_model, credit_xy):
    scored = credit_model.predict(credit_xy[0].iloc[:4], params=LIME)

    total = scored["lime_intercept"] + scored[lime_columns(scored)].sum(axis=1)

    assert lime_columns(scored) == [f"lime:{name}" for name in credit_xy[0].columns]
    np.testing.assert_allclose(total, scored["lime_local_prediction"], atol=1e-10)
    assert scored["lime_score"].between(-1, 1).all()


def test_lime_and_shap_in_one_response(credit_model, credit_xy):
    scored = credit_model.predict(credit_xy[0].iloc[:2], params={**LIME, "explainers": "shap,lime"})

    assert "shap:Income" in scored
    assert "lime:Income" in scored


def test_lime_default_explainers_from_log_time(credit_model, credit_xy):
    scored = credit_model.predict(credit_xy[0].iloc[:1], params={"num_samples": 200})

    assert {"shap:Income", "lime:Income"} <= set(scored)


def test_lime_explains_positive_class_probability(credit_model, credit_xy):
    rows = credit_xy[0].iloc[:3]
    scored = credit_model.predict(rows, params=LIME)

    # With this many samples the surrogate tracks the model's probability of "good" closely.
    probability_good = credit_model.engine.estimator.predict_proba(rows)[:, 1]
    np.testing.assert_allclose(scored["lime_local_prediction"], probability_good, atol=0.25)
    assert set(scored["explained_class"]) == {"good"}


def test_lime_negative_class_mirrors_positive(credit_model, credit_xy):
    rows = credit_xy[0].iloc[:3]

    good = credit_model.predict(rows, params={**LIME, "explained_class": "good"})
    bad = credit_model.predict(rows, params={**LIME, "explained_class": "bad"})

    # Same samples, targets p and 1 - p: the weighted ridge fit mirrors exactly.
    np.testing.assert_allclose(bad[lime_columns(bad)], -good[lime_columns(good)].to_numpy(), atol=1e-9)
    np.testing.assert_allclose(bad["lime_intercept"], 1 - good["lime_intercept"], atol=1e-9)


def test_lime_row_alone_equals_row_in_batch(credit_model, credit_xy):
    X = credit_xy[0]

    alone = credit_model.predict(X.iloc[[7]], params=LIME)
    in_batch = credit_model.predict(X.iloc[[3, 7, 1]], params=LIME)

    pd.testing.assert_frame_equal(alone, in_batch.iloc[[1]].reset_index(drop=True))


def test_lime_same_after_reload(credit_model, credit_model_path, credit_xy):
    rows = credit_xy[0].iloc[:2]

    again = em.load_model(str(credit_model_path)).predict(rows, params=LIME)

    pd.testing.assert_frame_equal(credit_model.predict(rows, params=LIME), again)


def test_lime_seed_changes_samples(credit_model, credit_xy):
    rows = credit_xy[0].iloc[:1]

    first = credit_model.predict(rows, params={**LIME, "seed": 1})
    second = credit_model.predict(rows, params={**LIME, "seed": 2})

    assert not np.array_equal(first[lime_columns(first)].to_numpy(), second[lime_columns(second)].to_numpy())


def test_lime_num_features_limits_nonzero_weights(credit_model, credit_xy):
    scored = credit_model.predict(credit_xy[0].iloc[:3], params={**LIME, "num_features": 2})

    assert ((scored[lime_columns(scored)] != 0).sum(axis=1) <= 2).all()


def test_reasons_follow_lime_without_shap(credit_model, credit_xy):
    scored = credit_model.predict(credit_xy[0].iloc[:3], params={**LIME, "top_k": 1})

    weights = scored[lime_columns(scored)].to_numpy()
    np.testing.assert_allclose(scored["reason_attribution_1"], weights.max(axis=1))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_samples": 1}, "'num_samples' must be between 2 and 20000; the request's value is below 2"),
        ({"num_samples": 10**6}, "'num_samples' must be between 2 and 20000"),
        ({"num_features": 0}, "'num_features' must be between 1 and 13; the request's value is below 1"),
        ({"num_features": 14}, "'num_features' must be between 1 and 13; the request's value is above 13"),
        ({"explainers": "none", "top_k": 2}, "reasons need an explainer"),
        ({"explainers": "lime,anchors"}, "names an unknown explainer; expected"),
        ({"num_sample": 100}, "Unknown parameter 'num_sample'"),
    ],
)
def test_invalid_lime_param_rejected(credit_model, credit_xy, params, message):
    with pytest.raises(em.InvalidParameterError, match=message):
        credit_model.predict(credit_xy[0].iloc[:1], params=params)


def test_lime_all_classes_of_multiclass(tmp_path):
    X, y = load_iris(return_X_y=True, as_frame=True)
    estimator = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(X, y)
    em.save_model(estimator, tmp_path / "m", background_data=X)

    scored = em.load_model(str(tmp_path / "m")).predict(X.iloc[:2], params={**LIME, "explained_class": "all"})

    for k in range(3):
        total = scored[f"lime_intercept@{k}"] + scored[lime_columns(scored, str(k))].sum(axis=1)
        np.testing.assert_allclose(total, scored[f"lime_local_prediction@{k}"], atol=1e-10)


def test_lime_regression_explains_prediction(tmp_path):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    estimator = RandomForestRegressor(n_estimators=20, random_state=0).fit(X, y)
    em.save_model(estimator, tmp_path / "m", background_data=X, lime_settings={"num_samples": 400})

    scored = em.load_model(str(tmp_path / "m")).predict(X.iloc[:3], params={"explainers": "lime"})

    assert "explained_class" not in scored
    np.testing.assert_allclose(scored["lime_local_prediction"], scored["prediction"], rtol=0.5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "regression"}, "lime_settings must be a dict with keys among"),
        ({"num_samples": 50_000}, "num_samples=50000 is above max_num_samples=20000"),
        ({"discretizer": "entropy"}, "discretizer"),
        ({"num_features": 99}, "num_features=99 is above the 10 features"),
    ],
)
def test_invalid_lime_settings_rejected_at_save(tmp_path, settings, message):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    estimator = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)

    with pytest.raises(em.InvalidParameterError, match=message):
        em.save_model(estimator, tmp_path / "m", background_data=X, lime_settings=settings)
    assert not (tmp_path / "m").exists()


def test_lime_negative_seed_accepted(credit_model, credit_xy):
    scored = credit_model.predict(credit_xy[0].iloc[:1], params={**LIME, "seed": -1})

    assert "lime:Income" in scored


def test_float_param_rejected(credit_model, credit_xy):
    with pytest.raises(em.InvalidParameterError, match="Parameter 'num_samples' must be an integer, got a float"):
        credit_model.predict(credit_xy[0].iloc[:1], params={"num_samples": 100.0})


def test_unknown_lime_setting_rejected(tmp_path):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    estimator = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)

    with pytest.raises(em.InvalidParameterError, match="lime_settings must be a dict with keys among"):
        em.save_model(estimator, tmp_path / "m", background_data=X, lime_settings={"bogus": 1})
