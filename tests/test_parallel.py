"""Exact TreeSHAP spread over processes: the same values as single-process shap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shap
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

import explainable_model as em
from explainable_model.explainers.parallel import N_JOBS_VARIABLE, resolve_n_jobs


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(1500, 8, n_informative=5, n_classes=3, random_state=0)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]), y


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0),
        lambda: GradientBoostingClassifier(n_estimators=20, random_state=0),
    ],
    ids=["random_forest", "multiclass_gradient_boosting"],
)
def test_two_processes_equal_one(tmp_path, data, make):
    X, y = data
    estimator = make().fit(X, y)
    em.save_model(estimator, tmp_path / "one", background_data=X, shap_n_jobs=1)
    em.save_model(estimator, tmp_path / "two", background_data=X, shap_n_jobs=2)

    single = em.load_model(str(tmp_path / "one")).explain(X)
    split = em.load_model(str(tmp_path / "two")).explain(X)

    np.testing.assert_array_equal(split.values, single.values)
    np.testing.assert_array_equal(split.base_values, single.base_values)


def test_split_values_equal_shap(tmp_path, data):
    X, y = data
    forest = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(X, y)
    em.save_model(forest, tmp_path / "m", background_data=X, shap_n_jobs=2)

    values = em.load_model(str(tmp_path / "m")).explain(X).values

    np.testing.assert_allclose(values, np.asarray(shap.TreeExplainer(forest).shap_values(X)), atol=1e-12)


def test_environment_overrides_setting(monkeypatch):
    monkeypatch.setenv(N_JOBS_VARIABLE, "3")

    assert resolve_n_jobs(8) == 3


def test_setting_used_without_environment(monkeypatch):
    monkeypatch.delenv(N_JOBS_VARIABLE, raising=False)

    assert resolve_n_jobs(5) == 5


@pytest.mark.parametrize("text", ["0", "-2", "many"])
def test_invalid_environment_rejected(monkeypatch, text):
    monkeypatch.setenv(N_JOBS_VARIABLE, text)

    with pytest.raises(ValueError, match=f"{N_JOBS_VARIABLE} must be a positive integer"):
        resolve_n_jobs(None)


def test_invalid_setting_rejected(tmp_path, data):
    X, y = data
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y)

    with pytest.raises(em.InvalidParameterError, match="shap_n_jobs must be a positive integer"):
        em.save_model(forest, tmp_path / "m", background_data=X, shap_n_jobs=0)
