"""SHAP explainers against closed-form oracles and the reference shap library."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shap
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from explainable_model.estimators import detect_task, model_output
from explainable_model.explainers import build_shap_explainer, choose_shap_method, shap_units
from explainable_model.explainers.permutation import PermutationShapExplainer
from explainable_model.features import describe_features


def _explainer(estimator, frame, method=None, background=None):
    task, _ = detect_task(estimator)
    method = method or choose_shap_method(estimator, True)
    units = shap_units(estimator, method, task)
    background = frame if background is None else background
    return build_shap_explainer(estimator, method, task, units, describe_features(frame), background), units, task


@pytest.fixture(scope="module")
def diabetes():
    return load_diabetes(return_X_y=True, as_frame=True)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True, as_frame=True)


def test_linear_matches_closed_form(diabetes):
    X, y = diabetes
    model = LinearRegression().fit(X, y)
    explainer, _, _ = _explainer(model, X)

    result = explainer.explain(X.iloc[:10])

    expected = model.coef_ * (X.iloc[:10].to_numpy() - X.to_numpy().mean(axis=0))
    np.testing.assert_allclose(result.values[:, :, 0], expected, atol=1e-10)
    np.testing.assert_allclose(result.base_values[:, 0], model.predict(X).mean(), atol=1e-8)


def test_linear_matches_shap_linear_explainer(iris):
    X, y = iris
    model = LogisticRegression(max_iter=1000).fit(X, y)
    # shap's masker subsamples backgrounds above 100 rows, so both get the same 100 rows.
    background = X.sample(100, random_state=0)
    explainer, units, _ = _explainer(model, X, background=background)

    result = explainer.explain(X.iloc[:10])

    reference = shap.LinearExplainer(model, background).shap_values(X.iloc[:10])
    assert units == "logit"
    np.testing.assert_allclose(result.values, np.asarray(reference), atol=1e-10)


@pytest.mark.parametrize(
    "model",
    [RandomForestClassifier(n_estimators=30, random_state=0), HistGradientBoostingClassifier(max_iter=30)],
    ids=["random_forest", "hist_gradient_boosting"],
)
def test_tree_equals_shap_tree_explainer(iris, model):
    X, y = iris
    model.fit(X, y)
    explainer, _, _ = _explainer(model, X)

    result = explainer.explain(X.iloc[:20])

    reference = np.asarray(shap.TreeExplainer(model).shap_values(X.iloc[:20]))
    np.testing.assert_allclose(result.values, reference, atol=1e-12)


def test_multiclass_gradient_boosting_is_additive(iris):
    X, y = iris
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
    explainer, units, task = _explainer(model, X)

    result = explainer.explain(X)

    assert explainer.method == "tree"
    np.testing.assert_allclose(result.output(), model_output(model, X, units, task), atol=1e-9)


def test_regression_forest_is_additive(diabetes):
    X, y = diabetes
    model = ExtraTreesRegressor(n_estimators=20, random_state=0).fit(X, y)
    explainer, units, task = _explainer(model, X)

    result = explainer.explain(X.iloc[:50])

    np.testing.assert_allclose(result.output(), model_output(model, X.iloc[:50], units, task), atol=1e-8)


def test_permutation_is_exact_for_linear_model(diabetes):
    X, y = diabetes
    model = LinearRegression().fit(X, y)
    background = X.iloc[:30]
    explainer, _, _ = _explainer(model, X, method="permutation", background=background)

    result = explainer.explain(X.iloc[:5])

    # Every ordering gives a linear model's features the same marginal contribution.
    expected = model.coef_ * (X.iloc[:5].to_numpy() - background.to_numpy().mean(axis=0))
    np.testing.assert_allclose(result.values[:, :, 0], expected, atol=1e-9)


def test_permutation_is_additive_for_any_model():
    X, y = make_classification(200, 5, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)])
    model = KNeighborsClassifier().fit(X, y)
    explainer, units, task = _explainer(model, X, background=X.iloc[:40])

    result = explainer.explain(X.iloc[:10])

    assert isinstance(explainer, PermutationShapExplainer)
    np.testing.assert_allclose(result.output(), model_output(model, X.iloc[:10], units, task), atol=1e-12)


def test_permutation_with_all_orderings_equals_exact_shap():
    X, y = make_classification(150, 3, n_informative=3, n_redundant=0, random_state=1)
    X = pd.DataFrame(X, columns=["a", "b", "c"])
    model = KNeighborsClassifier().fit(X, y)
    background = X.iloc[:20]
    task, _ = detect_task(model)
    explainer = PermutationShapExplainer(
        lambda frame: model_output(model, frame, "probability", task), background, describe_features(X), n_orderings=200
    )

    result = explainer.explain(X.iloc[:3])

    # 200 orderings of 3 features visit all 6 orderings; the estimate approaches the exact value.
    exact = shap.ExactExplainer(
        lambda data: model.predict_proba(pd.DataFrame(data, columns=X.columns))[:, 1],
        shap.maskers.Independent(background, max_samples=20),
    )(X.iloc[:3])
    np.testing.assert_allclose(result.values[:, :, 0], exact.values, atol=0.02)


def test_permutation_same_row_same_values_in_any_batch():
    X, y = make_classification(200, 6, random_state=0)
    X = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    model = KNeighborsClassifier().fit(X, y)
    explainer, _, _ = _explainer(model, X, background=X.iloc[:20])

    alone = explainer.explain(X.iloc[[3]], seed=7).values[0]
    in_batch = explainer.explain(X.iloc[[5, 3, 8]], seed=7).values[1]
    other_seed = explainer.explain(X.iloc[[3]], seed=8).values[0]

    np.testing.assert_array_equal(alone, in_batch)
    assert not np.array_equal(alone, other_seed)
