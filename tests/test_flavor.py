"""Saving, logging and loading: the artifact, the signature, the manifest, the pickle policy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

import explainable_model as em
from explainable_model.output import parse_column
from tests.helpers import credit_pipeline


@pytest.fixture(scope="module")
def credit_model(credit_xy):
    X, y = credit_xy
    return credit_pipeline(X, y, GradientBoostingClassifier(n_estimators=30, random_state=0))


@pytest.fixture
def saved(tmp_path, credit_model, credit_xy):
    path = tmp_path / "model"
    em.save_model(credit_model, path, background_data=credit_xy[0])
    return path


def shap_columns(frame):
    return [name for name in frame.columns if parse_column(name).kind == "shap"]


def test_log_and_load_registered_model(credit_model, credit_xy):
    X, _ = credit_xy
    with mlflow.start_run():
        info = em.log_model(credit_model, name="credit_model", background_data=X, registered_model_name="credit")

    loaded = em.load_model("models:/credit/1")
    scored = loaded.predict(X.iloc[:10])

    assert info.registered_model_version == 1
    assert scored["prediction"].tolist() == credit_model.predict(X.iloc[:10]).tolist()
    assert shap_columns(scored) == [f"shap:{name}" for name in X.columns]


def test_flavor_config_describes_model(saved, credit_xy):
    config = em.load_model(str(saved)).config

    assert config["task"] == "binary"
    assert config["classes"] == ["bad", "good"]
    assert config["attribution_units"] == "log_odds"
    assert config["explainers"]["shap"]["method"] == "tree"
    assert config["estimator"]["serialization_format"] == "skops"
    assert config["additivity"]["max_error"] < 1e-9
    assert [spec["name"] for spec in config["features"]] == list(credit_xy[0].columns)


def test_base_value_plus_attributions_equal_log_odds(saved, credit_model, credit_xy):
    X, _ = credit_xy
    scored = em.load_model(str(saved)).predict(X.iloc[:50])

    total = scored["shap_base_value"] + scored[shap_columns(scored)].sum(axis=1)

    np.testing.assert_allclose(total, credit_model.decision_function(X.iloc[:50]), atol=1e-9)


def test_signature_declares_inputs_outputs_params(saved, credit_xy):
    signature = mlflow.models.Model.load(str(saved / "MLmodel")).signature

    assert signature.inputs.input_names() == list(credit_xy[0].columns)
    assert {"prediction", "shap_base_value", "shap:Income"} <= set(signature.outputs.input_names())
    assert {spec.name for spec in signature.params} == {
        "explainers",
        "top_k",
        "explained_class",
        "seed",
        "shap_orderings",
        "num_samples",
        "num_features",
    }


def test_input_example_stored(saved):
    assert (saved / "input_example.json").is_file()


def test_explainer_state_is_portable(saved):
    state = sorted(p.name for p in (saved / "artifacts" / "explainer_state").iterdir())

    assert state == ["background.parquet", "explainers.json", "features.json", "lime.json"]


def test_model_code_and_package_source_travel_with_model(saved):
    assert (saved / "code" / "explainable_model" / "engine.py").is_file()


def test_changed_file_rejected_at_load(saved):
    background = saved / "artifacts" / "explainer_state" / "background.parquet"
    background.write_bytes(background.read_bytes() + b"\0")

    with pytest.raises(em.ModelIntegrityError, match="background.parquet.*does not match its SHA-256"):
        mlflow.pyfunc.load_model(str(saved))


def test_missing_file_rejected_at_load(saved):
    (saved / "artifacts" / "explainer_state" / "features.json").unlink()

    with pytest.raises(em.ModelIntegrityError, match="features.json.*missing"):
        mlflow.pyfunc.load_model(str(saved))


def test_skops_model_loads_with_pickle_disabled(saved, credit_xy, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

    scored = mlflow.pyfunc.load_model(str(saved)).predict(credit_xy[0].iloc[:3])

    assert len(scored) == 3


def _double(values):
    return values * 2


def test_lambda_pipeline_falls_back_to_cloudpickle(tmp_path, credit_xy, monkeypatch):
    X, y = credit_xy
    numeric = X.select_dtypes("number").fillna(0)
    model = make_pipeline(FunctionTransformer(lambda values: values * 2), LinearRegression()).fit(numeric, y == "bad")
    em.save_model(model, tmp_path / "model", background_data=numeric)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")

    with pytest.raises(em.ModelIntegrityError, match="stored with cloudpickle.*MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.pyfunc.load_model(str(tmp_path / "model"))


class _CurvedRegression(LinearRegression):
    """A model whose predictions are not what its coefficients say: linear SHAP cannot add up."""

    def predict(self, X):
        return super().predict(X) + np.asarray(X)[:, 0] ** 2


def test_non_additive_exact_method_fails_save(tmp_path):
    X = pd.DataFrame({"a": np.linspace(-1, 1, 50), "b": np.linspace(0, 1, 50)})
    model = _CurvedRegression().fit(X, X["a"] + X["b"])

    with pytest.raises(em.AdditivityError, match="linear SHAP attributions do not add up"):
        em.save_model(model, tmp_path / "model", background_data=X)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"background_data": np.zeros((3, 13))}, "background_data must be a non-empty pandas DataFrame"),
        ({"shap_method": "kernel"}, "shap_method must be one of"),
        ({"explainers": ("shap", "anchors")}, "unknown explainer 'anchors'"),
        ({"background_size": 0}, "background_size must be a positive integer"),
        ({"shap_orderings": 500}, "shap_orderings must be an integer between 1 and"),
        ({"serialization_format": "pickle"}, "serialization_format must be one of"),
    ],
)
def test_invalid_argument_logs_nothing(credit_model, credit_xy, arguments, message):
    kwargs = {"background_data": credit_xy[0], **arguments}

    with pytest.raises(em.InvalidParameterError, match=message):
        em.log_model(credit_model, name="m", registered_model_name="never", **kwargs)
    assert mlflow.search_logged_models(output_format="list") == []
    assert mlflow.MlflowClient().search_registered_models() == []


def test_unfitted_estimator_rejected(tmp_path, credit_xy):
    with pytest.raises(em.UnsupportedEstimatorError, match="not fitted"):
        em.save_model(GradientBoostingClassifier(), tmp_path / "model", background_data=credit_xy[0])


def test_concurrent_loads_succeed(saved, credit_xy):
    rows = credit_xy[0].iloc[:5]
    expected = em.load_model(str(saved)).predict(rows)

    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: em.load_model(str(saved)), range(8)))

    for model in loaded:
        pd.testing.assert_frame_equal(model.predict(rows), expected)


def test_unknown_param_rejected_by_load_model(saved, credit_xy):
    with pytest.raises(em.InvalidParameterError, match=r"Unknown parameter 'topk'; valid parameters are"):
        em.load_model(str(saved)).predict(credit_xy[0].iloc[:2], params={"topk": 3})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"top_k": -1}, "'top_k' must be between 0 and 13; the request's value is below 0"),
        ({"top_k": 99}, "'top_k' must be between 0 and 13; the request's value is above 13"),
        ({"explained_class": "maybe"}, "'explained_class' must be one of"),
        ({"explainers": "shapley"}, "names an unknown explainer; expected"),
        ({"shap_orderings": 0}, "'shap_orderings' must be between 1 and 100"),
        ({"top_k": "three"}, "top_k"),
    ],
)
def test_invalid_param_value_rejected(saved, credit_xy, params, message):
    with pytest.raises(mlflow.exceptions.MlflowException, match=message):
        em.load_model(str(saved)).predict(credit_xy[0].iloc[:2], params=params)


def test_explaining_negative_class_flips_attributions(saved, credit_model, credit_xy):
    model = em.load_model(str(saved))
    rows = credit_xy[0].iloc[:20]

    good = model.predict(rows, params={"explained_class": "good"})
    bad = model.predict(rows, params={"explained_class": "bad"})

    np.testing.assert_allclose(bad[shap_columns(bad)].to_numpy(), -good[shap_columns(good)].to_numpy())
    total_bad = bad["shap_base_value"] + bad[shap_columns(bad)].sum(axis=1)
    np.testing.assert_allclose(total_bad, -credit_model.decision_function(rows), atol=1e-9)
    assert set(bad["explained_class"]) == {"bad"}


def test_all_classes_get_their_own_columns(saved, credit_xy):
    scored = em.load_model(str(saved)).predict(credit_xy[0].iloc[:3], params={"explained_class": "all"})

    assert {"shap_base_value@bad", "shap_base_value@good", "shap@bad:Income", "shap@good:Income"} <= set(scored)
    assert "explained_class" not in scored


def test_reasons_are_largest_attributions(saved, credit_xy):
    rows = credit_xy[0].iloc[:5]
    scored = em.load_model(str(saved)).predict(rows, params={"top_k": 2})

    attributions = scored[shap_columns(scored)].to_numpy()
    first = [rows.columns[i] for i in attributions.argmax(axis=1)]
    assert scored["reason_feature_1"].tolist() == first
    np.testing.assert_allclose(scored["reason_attribution_1"], attributions.max(axis=1))
    assert scored["reason_value_1"].iloc[0] == str(rows[first[0]].iloc[0])


def test_saved_model_directory_must_be_new(saved, credit_model, credit_xy):
    with pytest.raises(mlflow.exceptions.MlflowException, match="already exists"):
        em.save_model(credit_model, saved, background_data=credit_xy[0])


def test_public_names_are_pinned():
    assert em.__all__ == sorted(em.__all__, key=str.lower) or em.__all__ == sorted(em.__all__)
    assert set(em.__all__) == {
        "AdditivityError",
        "Attributions",
        "CheckResult",
        "ExplainableModelError",
        "InvalidInputError",
        "InvalidParameterError",
        "LoadedModel",
        "ModelIntegrityError",
        "ParsedColumn",
        "ReportFiles",
        "PromotionError",
        "PromotionReport",
        "UnsupportedEstimatorError",
        "__version__",
        "column_name",
        "current_holder",
        "default_requirements",
        "load_model",
        "log_model",
        "parse_column",
        "report",
        "promote",
        "save_model",
        "to_shap_explanation",
    }


def test_path_argument_accepts_str(tmp_path, credit_model, credit_xy):
    em.save_model(credit_model, str(tmp_path / "m"), background_data=credit_xy[0].iloc[:200])

    assert Path(tmp_path / "m" / "MLmodel").is_file()


def test_unexpected_column_rejected_by_load_model(saved, credit_xy):
    rows = credit_xy[0].iloc[:2].assign(Extra=1)

    with pytest.raises(em.InvalidInputError, match="unexpected columns: 'Extra'"):
        em.load_model(str(saved)).predict(rows)


def test_missing_reason_value_is_none(saved, credit_xy):
    rows = credit_xy[0].iloc[:2].copy()
    rows.loc[1, ["Income", "Assets", "Debt", "Home", "Job"]] = np.nan

    scored = em.load_model(str(saved)).predict(rows, params={"top_k": 13})

    values = scored[[f"reason_value_{rank}" for rank in range(1, 14)]].to_numpy()
    assert not any(isinstance(value, float) for value in values.ravel())
    assert None in values[1]


def test_negative_seed_accepted(tmp_path, credit_xy):
    X, y = credit_xy
    from sklearn.neighbors import KNeighborsClassifier

    model = credit_pipeline(X.iloc[:300], y.iloc[:300], KNeighborsClassifier(), scale=True)
    em.save_model(model, tmp_path / "m", background_data=X.iloc[:300], background_size=10, seed=-5)

    scored = em.load_model(str(tmp_path / "m")).predict(X.iloc[:2], params={"seed": -1, "shap_orderings": 2})

    assert len(scored) == 2


def test_clustering_estimator_rejected(tmp_path):
    from sklearn.cluster import KMeans

    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})

    with pytest.raises(em.UnsupportedEstimatorError, match="neither a classifier nor a regressor"):
        em.save_model(KMeans(2, n_init=1).fit(X), tmp_path / "m", background_data=X)


def test_integer_reason_value_same_with_missing_in_batch(tmp_path, credit_xy):
    X, y = credit_xy
    model = credit_pipeline(X, y, GradientBoostingClassifier(n_estimators=10, random_state=0))
    em.save_model(model, tmp_path / "m", background_data=X)
    loaded = em.load_model(str(tmp_path / "m"))
    rows = X.iloc[:2].copy()
    with_missing = rows.astype({"Seniority": "float64"})
    with_missing.loc[1, "Seniority"] = np.nan

    alone = loaded.predict(rows.iloc[:1], params={"top_k": 13})
    batch = loaded.predict(with_missing, params={"top_k": 13})

    assert alone.filter(like="reason_value").iloc[0].tolist() == batch.filter(like="reason_value").iloc[0].tolist()
