"""Spark scoring: explainable_model.spark.score against in-process predict, in local mode.

The Spark tests need pyspark and Java 17+ (``make test`` installs both, see tests/spark_setup.sh).
Without them they skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model
from mlflow.types import ColSpec, Schema
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

import explainable_model as em
from tests.helpers import credit_pipeline

ON_CI = os.environ.get("CI", "").lower() in ("true", "1")


def _unavailable(reason: str) -> None:
    message = f"Spark tests need {reason}; run `make test`, which installs them (tests/spark_setup.sh)."
    if ON_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def spark():
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _unavailable("pyspark (pip install -e '.[spark]')")
    java_home = os.environ.get("JAVA_HOME")
    java = (java_home and shutil.which("java", path=os.path.join(java_home, "bin"))) or shutil.which("java")
    if java is None:
        _unavailable("Java 17 or later (apt-get install openjdk-17-jre-headless)")
    version = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    # Spark's Python workers must run this interpreter, which has pandas and the package.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("explainable_model-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.pyspark.python", sys.executable)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    assert session.sparkContext.master == "local[2]", version
    yield session
    session.stop()


@pytest.fixture(scope="module")
def credit_model_path(tmp_path_factory, credit_xy):
    X, y = credit_xy
    X, y = X.iloc[:1500], y.iloc[:1500]
    pipeline = credit_pipeline(X, y, GradientBoostingClassifier(n_estimators=30, random_state=0))
    path = tmp_path_factory.mktemp("spark") / "credit"
    em.save_model(pipeline, path, background_data=X)
    return str(path)


@pytest.fixture(scope="module")
def credit_rows(credit_xy):
    """300 applications with an ``id`` key, including rows with missing values."""
    X = credit_xy[0].iloc[1500:1800].copy()
    # The data has missing numbers; one row misses a text value as well. No integer column gets
    # a NaN: that turns it into floats, and the engine then writes reason values as "9.0" in a
    # batch holding the NaN and "9" in the others, so the text depends on Spark's batching.
    X.iloc[0, X.columns.get_loc("Home")] = None
    assert X.isna().any(axis=1).sum() > 5
    return X.reset_index(drop=True).assign(id=lambda frame: np.arange(len(frame)) * 7 + 3)


@pytest.fixture(scope="module")
def dotted():
    """A model whose feature names hold spaces and dots, and rows with a missing value."""
    rng = np.random.default_rng(0)
    n = 300
    X = pd.DataFrame(
        {
            "monthly income.usd": rng.normal(3000, 800, n),
            "age in years": rng.integers(18, 80, n),
            "home type": rng.choice(["rent", "own", "other"], n),
        }
    )
    y = np.where(X["monthly income.usd"] / 1000 + rng.normal(0, 1, n) > 3, "yes", "no")
    pipeline = credit_pipeline(X, pd.Series(y), LogisticRegression(max_iter=1000))
    return pipeline, X


def assert_same_output(spark_frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Column by column: numbers to 1e-9 with null == NaN, text exactly with null == None."""
    assert list(spark_frame.columns) == list(expected.columns)
    for name in expected.columns:
        got, want = spark_frame[name], expected[name]
        numeric = pd.api.types.is_numeric_dtype(got) and not pd.api.types.is_bool_dtype(got)
        if numeric:
            np.testing.assert_allclose(
                got.to_numpy(dtype=float), pd.to_numeric(want).to_numpy(dtype=float), rtol=0, atol=1e-9, err_msg=name
            )
        else:
            as_list = [None if pd.isna(v) else v for v in got]
            assert as_list == [None if pd.isna(v) else v for v in want], name


def scored_by_key(scored, key: str = "id") -> pd.DataFrame:
    return scored.select(key, "explanation.*").toPandas().sort_values(key).drop(columns=key).reset_index(drop=True)


@pytest.mark.parametrize("params", [None, {"top_k": 13, "explained_class": "bad"}], ids=["defaults", "top_k"])
def test_score_matches_predict_on_credit_data(spark, credit_model_path, credit_rows, params):
    from explainable_model.spark import score

    rows = credit_rows.sample(frac=1.0, random_state=1)  # Rows are paired by key, not by order.
    frame = spark.createDataFrame(rows).repartition(3)

    scored = score(frame, credit_model_path, params=params)
    got = scored_by_key(scored)

    expected = em.load_model(credit_model_path).predict(credit_rows.drop(columns="id"), params=params)
    assert scored.columns == [*frame.columns, "explanation"]
    assert_same_output(got, expected)
    if params:
        # Rows whose missing value ranks among the reasons get a null reason value.
        assert got.filter(like="reason_value_").isna().any(axis=None)
        assert got["explained_class"].eq("bad").all()


def test_feature_names_with_spaces_and_dots(spark, dotted, tmp_path):
    from pyspark.sql import functions

    from explainable_model.spark import field, quote, score

    pipeline, X = dotted
    em.save_model(pipeline, tmp_path / "dotted", background_data=X)
    rows = X.iloc[:40].copy()
    rows.iloc[2, 0] = np.nan
    # Features in another column order and a key column: columns are matched by name.
    frame = spark.createDataFrame(rows[["home type", "age in years", "monthly income.usd"]].assign(id=range(40)))
    params = {"explainers": "shap,lime", "num_samples": 300, "top_k": 2, "seed": 5}

    scored = score(frame, str(tmp_path / "dotted"), params=params)

    expected = em.load_model(str(tmp_path / "dotted")).predict(rows, params=params)
    assert_same_output(scored_by_key(scored), expected)
    one = scored.select("id", field("shap:monthly income.usd")).orderBy("id").toPandas()
    np.testing.assert_allclose(one["shap:monthly income.usd"], expected["shap:monthly income.usd"], atol=1e-9)
    summed = scored.select(functions.col(f"explanation.{quote('lime:age in years')}").alias("x")).toPandas()
    assert len(summed) == 40


def test_columns_map_other_names(spark, dotted, tmp_path):
    from explainable_model.spark import score

    pipeline, X = dotted
    em.save_model(pipeline, tmp_path / "dotted", background_data=X)
    renamed = X.iloc[:10].set_axis(["income", "age", "home"], axis=1)

    scored = score(spark.createDataFrame(renamed), str(tmp_path / "dotted"), columns=["income", "age", "home"])

    expected = em.load_model(str(tmp_path / "dotted")).predict(X.iloc[:10])
    assert_same_output(scored.select("explanation.*").toPandas(), expected)


def test_k12_result_type_fields_are_nullable(spark, credit_model_path):
    from explainable_model.spark import result_type

    struct = result_type(credit_model_path)
    outputs = Model.load(credit_model_path).signature.outputs
    # With required output columns, MLflow's own conversion makes the fields non-nullable,
    # so Spark fails with ARROW_TYPE_MISMATCH on the first null.
    required = Schema([ColSpec(spec.type, spec.name, required=True) for spec in outputs.inputs])

    assert struct.fieldNames() == outputs.input_names()
    assert all(f.nullable for f in struct.fields)
    assert not any(f.nullable for f in required.as_spark_schema().fields)
    assert struct["shap:Income"].dataType.typeName() == "double"
    assert struct["prediction"].dataType.typeName() == "string"


def test_result_type_follows_params(spark, credit_model_path):
    from explainable_model.spark import result_type

    struct = result_type(credit_model_path, params={"top_k": 2, "explained_class": "all"})

    names = struct.fieldNames()
    assert "shap@bad:Income" in names
    assert "shap@good:Income" in names
    assert "explained_class" not in names
    assert names[-3:] == ["reason_feature_2", "reason_value_2", "reason_attribution_2"]
    assert struct["reason_value_2"].dataType.typeName() == "string"
    assert all(f.nullable for f in struct.fields)


def test_errors_name_the_problem(spark, credit_model_path, credit_rows):
    from explainable_model.spark import score

    frame = spark.createDataFrame(credit_rows.drop(columns="Income"))
    with pytest.raises(em.InvalidInputError, match="no column \\['Income'\\]"):
        score(frame, credit_model_path)
    with pytest.raises(em.InvalidParameterError, match="top_kk"):
        score(spark.createDataFrame(credit_rows), credit_model_path, params={"top_kk": 1})
    with pytest.raises(em.InvalidInputError, match="already has a column 'id'"):
        score(spark.createDataFrame(credit_rows), credit_model_path, output_column="id")


def test_missing_pyspark_names_the_extra(monkeypatch):
    from explainable_model import spark as spark_module

    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(ImportError, match=r"explainable_model\[spark\]"):
        spark_module.result_type("unused")
