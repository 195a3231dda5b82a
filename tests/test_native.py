"""XGBoost and LightGBM: native storage, native TreeSHAP equal to shap, the same output layout."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import shap
import xgboost as xgb
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.pipeline import Pipeline

import explainable_model as em
from explainable_model.output import parse_column
from tests.helpers import credit_preprocessor


def shap_columns(frame, label=None):
    return [n for n in frame.columns if parse_column(n).kind == "shap" and parse_column(n).class_label == label]


def save_and_load(tmp_path, estimator, background, monkeypatch=None, **kwargs):
    em.save_model(estimator, tmp_path / "model", background_data=background, **kwargs)
    if monkeypatch is not None:
        # Native boosters and skops preprocessing load without unpickling anything.
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    return em.load_model(str(tmp_path / "model"))


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(400, 5, n_informative=3, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c", "d", "e"]), y


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True, as_frame=True)


ESTIMATORS = {
    "xgb_classifier": lambda: xgb.XGBClassifier(n_estimators=40, max_depth=4),
    "lgbm_classifier": lambda: lgb.LGBMClassifier(n_estimators=40, verbose=-1),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_binary_equals_shap_and_original(tmp_path, monkeypatch, binary, name):
    X, y = binary
    estimator = ESTIMATORS[name]().fit(X, y)
    model = save_and_load(tmp_path, estimator, X, monkeypatch)

    scored = model.predict(X.iloc[:30])

    reference = np.asarray(shap.TreeExplainer(estimator).shap_values(X.iloc[:30]))
    np.testing.assert_allclose(scored[shap_columns(scored)].to_numpy(), reference, atol=1e-6)
    np.testing.assert_allclose(scored["probability@1"], estimator.predict_proba(X.iloc[:30])[:, 1], atol=1e-7)
    assert scored["prediction"].tolist() == estimator.predict(X.iloc[:30]).tolist()
    assert model.config["estimator"]["booster"] == name.split("_")[0].replace("xgb", "xgboost").replace(
        "lgbm", "lightgbm"
    )


@pytest.mark.parametrize("name", ESTIMATORS)
def test_multiclass_layout_matches_scikit_learn(tmp_path, iris, name):
    X, y = iris
    estimator = ESTIMATORS[name]().fit(X, y)
    model = save_and_load(tmp_path, estimator, X)

    scored = model.predict(X.iloc[:10], params={"explained_class": "all"})

    reference = np.asarray(shap.TreeExplainer(estimator).shap_values(X.iloc[:10]))
    for k in range(3):
        np.testing.assert_allclose(scored[shap_columns(scored, str(k))].to_numpy(), reference[:, :, k], atol=1e-6)
    assert set(scored["shap_units"]) == {"logit"}


@pytest.mark.parametrize(
    "make",
    [lambda: xgb.XGBRegressor(n_estimators=40), lambda: lgb.LGBMRegressor(n_estimators=40, verbose=-1)],
    ids=["xgboost", "lightgbm"],
)
def test_regressor_is_additive_in_target_units(tmp_path, diabetes, make):
    X, y = diabetes
    estimator = make().fit(X, y)
    model = save_and_load(tmp_path, estimator, X)

    scored = model.predict(X.iloc[:50])

    total = scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1)
    np.testing.assert_allclose(total, estimator.predict(X.iloc[:50]), rtol=1e-6)
    assert set(scored["shap_units"]) == {"target"}


def test_poisson_regressor_explained_in_margin_units(tmp_path, diabetes):
    X, y = diabetes
    estimator = lgb.LGBMRegressor(n_estimators=20, objective="poisson", verbose=-1).fit(X, y)
    model = save_and_load(tmp_path, estimator, X)

    scored = model.predict(X.iloc[:20])

    total = scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1)
    np.testing.assert_allclose(np.exp(total), estimator.predict(X.iloc[:20]), rtol=1e-9)
    assert set(scored["shap_units"]) == {"margin"}


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_pipeline_with_booster_groups_raw_columns(tmp_path, monkeypatch, credit_xy, library):
    X, y = credit_xy
    final = (
        xgb.XGBClassifier(n_estimators=40) if library == "xgboost" else lgb.LGBMClassifier(n_estimators=40, verbose=-1)
    )
    pipeline = Pipeline([("pre", credit_preprocessor(X)), ("model", final)]).fit(X, y == "bad")
    model = save_and_load(tmp_path, pipeline, X, monkeypatch)

    scored = model.predict(X.iloc[:40])

    total = scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1)
    margin = (
        final.predict(pipeline[:-1].transform(X.iloc[:40]), output_margin=True)
        if library == "xgboost"
        else (final.predict(pipeline[:-1].transform(X.iloc[:40]), raw_score=True))
    )
    np.testing.assert_allclose(total, margin, atol=1e-5)
    assert shap_columns(scored) == [f"shap:{name}" for name in X.columns]
    assert model.config["estimator"]["serialization_format"] == "skops"


def test_lightgbm_category_columns(tmp_path, monkeypatch, credit_xy):
    X, y = credit_xy
    X = X.astype({c: "category" for c in X.columns if X[c].dtype == "str"})
    estimator = lgb.LGBMClassifier(n_estimators=40, verbose=-1).fit(X, y)
    model = save_and_load(tmp_path, estimator, X, monkeypatch)

    scored = model.predict(X.iloc[:30])

    reference = np.asarray(shap.TreeExplainer(estimator).shap_values(X.iloc[:30]))
    np.testing.assert_allclose(scored[shap_columns(scored)].to_numpy(), reference, atol=1e-9)
    assert scored["prediction"].tolist() == estimator.predict(X.iloc[:30]).tolist()


def test_xgboost_booster_from_train(tmp_path, binary):
    X, y = binary
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, label=y), num_boost_round=20)
    model = save_and_load(tmp_path, booster, X)

    scored = model.predict(X.iloc[:10])

    np.testing.assert_allclose(scored["probability@1"], booster.predict(xgb.DMatrix(X.iloc[:10])), atol=1e-7)
    assert model.config["task"] == "binary"


def test_lightgbm_string_labels_kept(tmp_path, binary):
    X, y = binary
    labels = np.where(y == 1, "yes", "no")
    model = save_and_load(tmp_path, lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, labels), X)

    scored = model.predict(X.iloc[:5], params={"explained_class": "no"})

    assert set(scored["prediction"]) <= {"yes", "no"}
    assert set(scored["explained_class"]) == {"no"}


def test_xgboost_without_feature_names_rejected(tmp_path, binary):
    X, y = binary
    estimator = xgb.XGBClassifier(n_estimators=5).fit(X.to_numpy(), y)

    with pytest.raises(em.UnsupportedEstimatorError, match="no feature names"):
        em.save_model(estimator, tmp_path / "model", background_data=X)


HOSTILE = ["monthly income", "a.b", "ünïcødé", "shap_base_value", "prediction"]


@pytest.mark.parametrize(
    "make",
    [lambda: lgb.LGBMClassifier(n_estimators=10, verbose=-1), lambda: xgb.XGBClassifier(n_estimators=10)],
    ids=["lightgbm", "xgboost"],
)
def test_hostile_feature_names_round_trip(tmp_path, binary, make):
    X, y = binary
    X = X.iloc[:, :5].set_axis(HOSTILE, axis=1)
    model = save_and_load(tmp_path, make().fit(X, y), X)

    scored = model.predict(X.iloc[:3])

    parsed = [parse_column(name) for name in scored.columns if parse_column(name).kind == "shap"]
    assert [column.feature for column in parsed] == HOSTILE
    assert scored.columns.is_unique
    np.testing.assert_allclose(
        scored["shap_base_value"] + scored[[f"shap:{name}" for name in HOSTILE]].sum(axis=1),
        model.engine.estimator.decision_function(X.iloc[:3]),
        atol=1e-5,
    )
