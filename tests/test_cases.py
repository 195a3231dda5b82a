"""Failures that users reported when wrapping scikit-learn models with SHAP in MLflow.

Each test names the case: the input that used to fail, and the value a correct library returns.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import shap
from mlflow.pyfunc.scoring_server import init as scoring_app
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_classification
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC
from starlette.testclient import TestClient

import explainable_model as em
from explainable_model.output import parse_column
from tests.helpers import credit_pipeline


def shap_columns(frame):
    return [name for name in frame.columns if parse_column(name).kind == "shap"]


def save_and_load(tmp_path, estimator, background, **kwargs):
    em.save_model(estimator, tmp_path / "model", background_data=background, **kwargs)
    return em.load_model(str(tmp_path / "model"))


def post(model, frame, params=None):
    """Send ``frame`` to MLflow's own scoring app, as `mlflow models serve` runs it."""
    split = json.loads(frame.to_json(orient="split", index=False))
    body = {"dataframe_split": split, **({"params": params} if params else {})}
    with TestClient(scoring_app(model.pyfunc_model)) as client:
        return client.post("/invocations", json=body)


def strict_json(text):
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture(scope="module")
def data_300x4():
    X, y2 = make_classification(300, 4, n_informative=3, n_redundant=0, random_state=0)
    _, y3 = make_classification(300, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0)
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]), y2, y3


FAMILIES = {
    "random_forest": (lambda: RandomForestClassifier(n_estimators=30, random_state=0), "probability"),
    "gradient_boosting": (lambda: GradientBoostingClassifier(n_estimators=30, random_state=0), "log_odds"),
    "hist_gradient_boosting": (lambda: HistGradientBoostingClassifier(max_iter=30), "log_odds"),
    "logistic_regression": (lambda: LogisticRegression(max_iter=1000), "log_odds"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_k01_binary_layout_same_for_every_family(tmp_path, data_300x4, family):
    X, y, _ = data_300x4
    make, units = FAMILIES[family]
    model = save_and_load(tmp_path, make().fit(X, y), X)

    scored = model.predict(X.iloc[:10])

    assert list(scored.columns) == [
        "prediction",
        "probability@0",
        "probability@1",
        "explained_class",
        "shap_units",
        "shap_base_value",
        "shap:a",
        "shap:b",
        "shap:c",
        "shap:d",
    ]
    assert set(scored["shap_units"]) == {units}
    assert set(scored["explained_class"]) == {"1"}


@pytest.mark.parametrize("family", FAMILIES)
def test_k01_multiclass_layout_same_for_every_family(tmp_path, data_300x4, family):
    X, _, y = data_300x4
    make, units = FAMILIES[family]
    estimator = make().fit(X, y)
    model = save_and_load(tmp_path, estimator, X)

    predicted = model.predict(X.iloc[:10])
    every_class = model.predict(X.iloc[:10], params={"explained_class": "all"})

    assert shap_columns(predicted) == ["shap:a", "shap:b", "shap:c", "shap:d"]
    assert predicted["explained_class"].tolist() == [str(c) for c in estimator.predict(X.iloc[:10])]
    assert shap_columns(every_class) == [f"shap@{k}:{f}" for k in range(3) for f in "abcd"]
    assert set(predicted["shap_units"]) == {"probability" if units == "probability" else "logit"}


def test_k02_bootstrapped_forest_is_additive(tmp_path):
    X, y = load_iris(return_X_y=True, as_frame=True)
    forest = RandomForestClassifier(random_state=0).fit(X, y)
    model = save_and_load(tmp_path, forest, X, background_size=150)

    scored = model.predict(X, params={"explained_class": "all"})

    for k in range(3):
        columns = [f"shap@{k}:{name}" for name in X.columns]
        total = scored[f"shap_base_value@{k}"] + scored[columns].sum(axis=1)
        np.testing.assert_allclose(total, forest.predict_proba(X)[:, k], atol=1e-6)
    reference = np.asarray(shap.TreeExplainer(forest).shap_values(X))
    np.testing.assert_allclose(scored[[f"shap@2:{n}" for n in X.columns]], reference[:, :, 2], atol=1e-12)
    assert model.config["additivity"]["max_error"] < 1e-6


@pytest.fixture(scope="module")
def age_city():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, 300),
            "city": pd.array(rng.choice(["paris", "lyon", "nice"], 300), dtype="str"),
            "noise": rng.normal(size=300),
        }
    )
    target = ((frame["age"] > 45) ^ (frame["city"] == "nice")).astype(int)
    return frame, target


def test_k03_name_selected_pipeline_explained_on_raw_columns(tmp_path, age_city):
    X, y = age_city
    pipeline = Pipeline(
        [
            ("columns", ColumnTransformer([("num", StandardScaler(), ["age"]), ("cat", OneHotEncoder(), ["city"])])),
            ("svc", SVC(probability=True, random_state=0)),
        ]
    ).fit(X, y)
    model = save_and_load(tmp_path, pipeline, X, background_size=30)

    scored = model.predict(X.iloc[:5])

    assert shap_columns(scored) == ["shap:age", "shap:city", "shap:noise"]
    np.testing.assert_allclose(scored["shap:noise"], 0.0, atol=1e-12)
    total = scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1)
    np.testing.assert_allclose(total, pipeline.predict_proba(X.iloc[:5])[:, 1], atol=1e-9)
    assert model.config["explainers"]["shap"]["method"] == "permutation"


def test_passthrough_columns_keep_exact_tree_shap(tmp_path, age_city):
    X, y = age_city
    columns = ColumnTransformer([("cat", OneHotEncoder(), ["city"])], remainder="passthrough")
    pipeline = Pipeline([("columns", columns), ("model", GradientBoostingClassifier(random_state=0))]).fit(X, y)
    model = save_and_load(tmp_path, pipeline, X)

    scored = model.predict(X.iloc[:20])

    assert model.config["explainers"]["shap"]["method"] == "tree"
    np.testing.assert_allclose(
        scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1),
        pipeline.decision_function(X.iloc[:20]),
        atol=1e-9,
    )


def test_k04_one_hot_children_summed_to_raw_columns(tmp_path):
    rng = np.random.default_rng(1)
    n = 400
    city = rng.choice(["A", "B", "C", "D"], n)
    city[:5] = "rare"
    X = pd.DataFrame(
        {
            "income": rng.normal(50, 10, n),
            "city": pd.array(city, dtype="str"),
            "city_size": pd.array(rng.choice(["small", "mid", "large"], n), dtype="str"),
        }
    )
    y = ((X["income"] > 50) ^ (X["city"] == "B") ^ (X["city_size"] == "mid")).astype(int)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["income"]),
            (
                "cat",
                OneHotEncoder(drop="first", min_frequency=10, handle_unknown="infrequent_if_exist"),
                ["city", "city_size"],
            ),
        ],
        sparse_threshold=0,
    )
    pipeline = Pipeline([("columns", columns), ("model", GradientBoostingClassifier(random_state=0))]).fit(X, y)
    model = save_and_load(tmp_path, pipeline, X)

    scored = model.predict(X.iloc[:50])

    transformed = pd.DataFrame(columns.transform(X.iloc[:50]), columns=columns.get_feature_names_out())
    per_column = pd.DataFrame(
        shap.TreeExplainer(pipeline[-1]).shap_values(transformed.to_numpy()), columns=transformed.columns
    )
    # Written out by hand: "city_size_mid" starts with "city_", so prefix matching would be wrong.
    city = ["cat__city_B", "cat__city_C", "cat__city_D", "cat__city_infrequent_sklearn"]
    city_size = ["cat__city_size_mid", "cat__city_size_small"]
    assert sorted(transformed.columns) == sorted(["num__income", *city, *city_size])
    np.testing.assert_allclose(scored["shap:city"], per_column[city].sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(scored["shap:city_size"], per_column[city_size].sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(scored["shap:income"], per_column["num__income"], atol=1e-9)


@pytest.fixture(scope="module")
def integer_with_missing():
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"x1": rng.normal(size=100), "x2": rng.normal(size=100), "n": rng.integers(0, 5, 100)})
    y = (X["x1"] + X["n"] > 2).astype(int)
    pipeline = Pipeline([("impute", SimpleImputer()), ("model", GradientBoostingClassifier(random_state=0))]).fit(X, y)
    return X, pipeline


def test_k07_null_in_integer_column_scored_in_process(tmp_path, integer_with_missing):
    X, pipeline = integer_with_missing
    model = save_and_load(tmp_path, pipeline, X)
    rows = X.iloc[:3].astype({"n": "float64"})
    rows.loc[1, "n"] = np.nan

    scored = mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(rows)

    assert model.config["features"][2]["accepts_missing"] is True
    expected = pipeline.decision_function(rows)
    np.testing.assert_allclose(
        scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1), expected, atol=1e-9
    )


def test_k07_null_in_integer_column_scored_over_rest(tmp_path, integer_with_missing):
    X, pipeline = integer_with_missing
    model = save_and_load(tmp_path, pipeline, X)
    rows = X.iloc[:3].astype({"n": "float64"})
    rows.loc[1, "n"] = np.nan

    response = post(model, rows)

    assert response.status_code == 200, response.text
    served = pd.DataFrame(strict_json(response.text)["predictions"])
    np.testing.assert_allclose(served["shap:n"], model.predict(rows)["shap:n"], atol=1e-12)


def test_k07_nullable_integer_example_keeps_signature(tmp_path, integer_with_missing):
    X, pipeline = integer_with_missing
    example = X.iloc[:5].astype({"n": "Int64"})
    example.loc[2, "n"] = pd.NA

    model = save_and_load(tmp_path, pipeline, X, input_example=example)

    assert model.metadata.signature is not None
    assert "n" in model.metadata.signature.inputs.input_names()
    assert len(model.predict(example)) == 5


def test_k09_non_finite_output_is_null_and_strict_json(tmp_path):
    X = pd.DataFrame({"a": np.linspace(0, 1, 50), "b": np.linspace(1, 2, 50)})
    regression = LinearRegression().fit(X, 1e10 * X["a"] + X["b"])
    model = save_and_load(tmp_path, regression, X)
    rows = pd.DataFrame({"a": [0.5, 1e300], "b": [1.0, 1.0]})

    scored = model.predict(rows)
    response = post(model, rows)

    assert scored["prediction"].iloc[1] is None
    assert scored["prediction"].iloc[0] == pytest.approx(regression.predict(rows.iloc[:1])[0])
    assert response.status_code == 200
    served = strict_json(response.text)["predictions"]
    assert served[1]["prediction"] is None
    assert served[1]["shap:a"] is None


@pytest.mark.parametrize("text_dtype", ["str", "object", "category"])
def test_k11_text_columns_of_any_dtype(tmp_path, credit_xy, text_dtype):
    X, y = credit_xy
    text = [c for c in X.columns if X[c].dtype == "str"]
    X = X.astype({c: text_dtype for c in text}).iloc[:800]
    pipeline = credit_pipeline(X, y.iloc[:800], GradientBoostingClassifier(n_estimators=20, random_state=0))
    model = save_and_load(tmp_path, pipeline, X)

    scored = model.predict(X.iloc[:20])

    assert {spec["name"] for spec in model.config["features"] if spec["kind"] == "categorical"} == set(text)
    total = scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1)
    np.testing.assert_allclose(total, pipeline.decision_function(X.iloc[:20]), atol=1e-9)


def test_k11_native_categorical_with_missing_values(tmp_path, credit_xy):
    X, y = credit_xy
    text = [c for c in X.columns if X[c].dtype == "str"]
    X = X.astype({c: "category" for c in text}).iloc[:1000]
    estimator = HistGradientBoostingClassifier(max_iter=20, categorical_features="from_dtype").fit(X, y.iloc[:1000])
    model = save_and_load(tmp_path, estimator, X, background_size=20, shap_orderings=2)

    scored = model.predict(X.iloc[:3])

    assert model.config["features"][1]["accepts_missing"] is True
    total = scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1)
    np.testing.assert_allclose(total, estimator.predict_proba(X.iloc[:3])[:, 1], atol=1e-9)
