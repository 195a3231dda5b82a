"""Classifier attributions in probability units: exact where TreeSHAP allows, rejected otherwise."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

import explainable_model as em
from explainable_model.output import parse_column


@pytest.fixture(scope="module")
def binary():
    X, y = make_classification(500, 6, random_state=0)
    return pd.DataFrame(X, columns=list("abcdef")), y


def total(scored):
    columns = [name for name in scored.columns if parse_column(name).kind == "shap"]
    return scored["shap_base_value"] + scored[columns].sum(axis=1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: GradientBoostingClassifier(n_estimators=30, random_state=0),
        lambda: xgb.XGBClassifier(n_estimators=30),
        lambda: lgb.LGBMClassifier(n_estimators=30, verbose=-1),
        lambda: RandomForestClassifier(n_estimators=20, random_state=0),
        lambda: KNeighborsClassifier(),
    ],
    ids=["gradient_boosting", "xgboost", "lightgbm", "random_forest", "k_neighbors"],
)
def test_probability_attributions_add_up(tmp_path, binary, make):
    X, y = binary
    estimator = make().fit(X, y)
    em.save_model(estimator, tmp_path / "m", background_data=X, output_space="probability", shap_orderings=4)

    scored = em.load_model(str(tmp_path / "m")).predict(X.iloc[:20])

    np.testing.assert_allclose(total(scored), estimator.predict_proba(X.iloc[:20])[:, 1], atol=1e-6)
    assert set(scored["shap_units"]) == {"probability"}


def test_probability_base_value_is_background_mean(tmp_path, binary):
    X, y = binary
    estimator = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
    em.save_model(estimator, tmp_path / "m", background_data=X, output_space="probability", background_size=80)
    scored = em.load_model(str(tmp_path / "m")).predict(X.iloc[:2])

    assert scored["shap_base_value"].iloc[0] == pytest.approx(
        estimator.predict_proba(_stored_background(tmp_path))[:, 1].mean(), abs=1e-9
    )


def _stored_background(tmp_path):
    return pd.read_parquet(tmp_path / "m" / "artifacts" / "explainer_state" / "background.parquet")


def test_linear_model_rejects_probability(tmp_path, binary):
    X, y = binary

    with pytest.raises(em.UnsupportedEstimatorError, match="Linear SHAP is exact in margin units only"):
        em.save_model(LogisticRegression().fit(X, y), tmp_path / "m", background_data=X, output_space="probability")


def test_multiclass_booster_rejects_probability(tmp_path):
    X, y = load_iris(return_X_y=True, as_frame=True)

    with pytest.raises(em.UnsupportedEstimatorError, match="in probability units.*shap_method='permutation'"):
        em.save_model(
            xgb.XGBClassifier(n_estimators=5).fit(X, y), tmp_path / "m", background_data=X, output_space="probability"
        )


def test_inexact_probability_fails_save(tmp_path, binary):
    # shap's interventional TreeSHAP in probability units does not add up for
    # HistGradientBoosting (shap 0.51); the save-time check catches it.
    X, y = binary
    estimator = HistGradientBoostingClassifier(max_iter=30).fit(X, y)

    with pytest.raises(em.AdditivityError, match="do not add up"):
        em.save_model(estimator, tmp_path / "m", background_data=X, output_space="probability")


def test_regressor_rejects_probability(tmp_path, binary):
    X, y = binary
    from sklearn.linear_model import LinearRegression

    with pytest.raises(em.UnsupportedEstimatorError, match="applies to classifiers"):
        em.save_model(LinearRegression().fit(X, y), tmp_path / "m", background_data=X, output_space="probability")


def test_unknown_output_space_rejected(tmp_path, binary):
    X, y = binary

    with pytest.raises(em.InvalidParameterError, match="output_space must be one of"):
        em.save_model(LogisticRegression().fit(X, y), tmp_path / "m", background_data=X, output_space="odds")
