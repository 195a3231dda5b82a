"""The explanation report: its files and values, log-time logging, the CLI and the shap.Explanation bridge."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import shap  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402

import explainable_model as em  # noqa: E402
from explainable_model import report_builder  # noqa: E402
from explainable_model.cli import main  # noqa: E402
from explainable_model.exceptions import InvalidInputError, InvalidParameterError  # noqa: E402
from explainable_model.output import parse_column  # noqa: E402
from tests.helpers import credit_pipeline  # noqa: E402

REPORT_FILES = {
    "report.html",
    "importance.csv",
    "importance.json",
    "shap_bar.png",
    "shap_beeswarm.png",
    "force_row_0.html",
    "force_row_1.html",
    "force_row_2.html",
    "lime_row_0.html",
    "lime_row_1.html",
    "lime_row_2.html",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def credit_model(credit_xy):
    X, y = credit_xy
    return credit_pipeline(X, y, GradientBoostingClassifier(n_estimators=30, random_state=0))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, credit_model, credit_xy):
    path = tmp_path_factory.mktemp("report_model") / "model"
    em.save_model(credit_model, path, background_data=credit_xy[0])
    return path


@pytest.fixture(scope="module")
def loaded(model_dir):
    return em.load_model(str(model_dir))


@pytest.fixture(scope="module")
def rows(credit_xy):
    return credit_xy[0].iloc[:300].reset_index(drop=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory, loaded, rows):
    return em.report(loaded, rows, tmp_path_factory.mktemp("report") / "out")


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory):
    iris = load_iris(as_frame=True)
    X = iris.data
    y = iris.target.map(dict(enumerate(iris.target_names)))
    path = tmp_path_factory.mktemp("iris") / "model"
    estimator = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    em.save_model(estimator, path, background_data=X)
    return em.load_model(str(path)), X


def shap_frame(scored: pd.DataFrame) -> pd.DataFrame:
    """Return the ``shap:FEATURE`` columns renamed to their feature names."""
    names = [name for name in scored.columns if parse_column(name).kind == "shap"]
    return scored[names].rename(columns=lambda name: parse_column(name).feature)


def test_report_writes_every_file(built):
    written = {path.name for path in built.paths()}

    assert written == REPORT_FILES
    assert {path.name for path in built.directory.iterdir()} == REPORT_FILES
    assert built.bar_plot.read_bytes().startswith(PNG_SIGNATURE)
    assert built.beeswarm_plot.read_bytes().startswith(PNG_SIGNATURE)


def test_importance_equals_mean_absolute_shap(built, loaded, rows):
    scored = loaded.predict(rows)
    expected = shap_frame(scored).abs().mean().sort_values(ascending=False, kind="stable")
    table = pd.read_csv(built.importance_csv)

    assert table["feature"].tolist() == expected.index.tolist()
    np.testing.assert_allclose(table["mean_abs_shap"], expected.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(table["mean_shap"], shap_frame(scored)[expected.index].mean().to_numpy(), rtol=1e-9)
    assert table["rank"].tolist() == list(range(1, len(expected) + 1))
    assert set(table["units"]) == {"log_odds"}
    assert set(table["explained_class"]) == {"good"}


def test_importance_json_matches_csv(built, rows):
    document = json.loads(built.importance_json.read_text())
    table = pd.read_csv(built.importance_csv)

    assert document["units"] == "log_odds"
    assert document["explained_class"] == "good"
    assert document["rows_per_class"] == {"good": len(rows)}
    assert document["rows"] == len(rows)
    assert [entry["feature"] for entry in document["features"]] == table["feature"].tolist()
    assert [entry["mean_abs_shap"] for entry in document["features"]] == pytest.approx(table["mean_abs_shap"].tolist())


def test_report_page_is_self_contained(built, rows):
    page = built.report.read_text()
    images = re.findall(r"<img [^>]*src='([^']*)'", page)

    assert len(images) == 2
    assert all(source.startswith("data:image/png;base64,") for source in images)
    assert "SHAP.AdditiveForceVisualizer" in page
    # shap's JavaScript bundle is inlined: no script or stylesheet is loaded from elsewhere.
    assert re.search(r"<script[^>]+src=", page) is None
    assert re.search(r"<link[^>]+href=", page) is None
    assert len(page) > len(shap.getjs())
    assert "log-odds" in page
    assert "class &#x27;good&#x27;" in page
    for name in rows.columns:
        assert f"<td>{name}</td>" in page


def test_force_page_contains_row_attributions(built, loaded, rows):
    scored = loaded.predict(rows.iloc[:1])
    page = built.force_pages[0].read_text()
    payload = json.loads(re.search(r"SHAP\.AdditiveForceVisualizer, (\{.*?\})\),", page, re.S).group(1))
    effects = {payload["featureNames"][int(key)]: value["effect"] for key, value in payload["features"].items()}
    expected = shap_frame(scored).iloc[0]

    assert payload["baseValue"] == pytest.approx(scored["shap_base_value"].iloc[0])
    assert payload["outNames"] == ["log_odds (good)"]
    assert len(effects) >= 5
    assert set(effects) <= set(rows.columns)
    for name, effect in effects.items():
        assert effect == pytest.approx(expected[name])
    assert shap.getjs() in page


def test_lime_page_shows_lime_weights(built, loaded, rows):
    scored = loaded.predict(rows.iloc[:1], params={"explainers": "lime"})
    weights = {
        parse_column(name).feature: scored[name].iloc[0] for name in scored.columns if parse_column(name).kind == "lime"
    }
    page = built.lime_pages[0].read_text()
    largest = max(weights, key=lambda name: abs(weights[name]))

    assert f"<td>{largest}</td>" in page
    assert f"{weights[largest]:+.4f}" in page
    assert f"intercept {scored['lime_intercept'].iloc[0]:.4g}" in page
    assert "probability of class &#x27;good&#x27;" in page


def test_report_samples_large_data(tmp_path, loaded, rows):
    built = em.report(loaded, rows, tmp_path, max_rows=50, sample_rows=1, lime=False)
    document = json.loads(built.importance_json.read_text())

    assert document["rows"] == 50
    assert [path.name for path in built.force_pages] == ["force_row_0.html"]
    assert built.lime_pages == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_sample_equals_frame_sample(tmp_path, loaded, rows, monkeypatch, suffix):
    # Chunks of 7 rows make the file sample cross many chunk boundaries.
    monkeypatch.setattr(report_builder, "_READ_CHUNK_ROWS", 7)
    path = tmp_path / f"rows{suffix}"
    if suffix == ".csv":
        rows.to_csv(path, index=False)
    else:
        rows.to_parquet(path, index=False)

    from_file = report_builder.read_rows(path, loaded.engine.features, max_rows=40, seed=3, head_rows=10)
    expected = rows.iloc[report_builder.sample_positions(len(rows), 40, seed=3)].reset_index(drop=True)

    assert len(from_file.sample) == 40
    assert from_file.total == len(rows)
    pd.testing.assert_frame_equal(from_file.sample, expected, check_dtype=False)
    pd.testing.assert_frame_equal(from_file.head, rows.iloc[:10], check_dtype=False)
    np.testing.assert_allclose(
        loaded.predict(from_file.sample)["shap:Income"], loaded.predict(expected)["shap:Income"]
    )


def _force_texts(built: em.ReportFiles) -> list[str]:
    # shap gives each force plot a random element id.
    return [re.sub(r"i[A-Z0-9]{20}", "ID", path.read_text()) for path in built.force_pages]


def test_file_report_equals_frame_report(tmp_path, loaded, rows):
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    options = {"max_rows": 50, "sample_rows": 2, "lime": False, "title": "same"}

    from_frame = em.report(loaded, rows, tmp_path / "frame", **options)
    from_file = em.report(loaded, tmp_path / "rows.parquet", tmp_path / "file", **options)

    assert from_file.importance_csv.read_text() == from_frame.importance_csv.read_text()
    assert _force_texts(from_file) == _force_texts(from_frame)
    assert "<td>50 of 300</td>" in from_file.report.read_text()


def test_file_without_rows_rejected(tmp_path, loaded, rows):
    rows.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)

    with pytest.raises(InvalidInputError, match="data has no rows"):
        report_builder.read_rows(tmp_path / "empty.csv", loaded.engine.features, max_rows=10)


def test_file_missing_feature_rejected(tmp_path, loaded, rows):
    rows.drop(columns="Income").to_parquet(tmp_path / "no_income.parquet", index=False)

    with pytest.raises(InvalidInputError, match=r"lacks the feature columns \['Income'\]"):
        report_builder.read_rows(tmp_path / "no_income.parquet", loaded.engine.features)


def test_multiclass_report_names_class(tmp_path, iris_model):
    model, X = iris_model
    built = em.report(model, X, tmp_path, explained_class="virginica", sample_rows=1)
    scored = model.predict(X, params={"explained_class": "virginica"})
    table = pd.read_csv(built.importance_csv)
    page = built.report.read_text()

    assert set(table["explained_class"]) == {"virginica"}
    assert set(table["units"]) == {"probability"}
    expected = shap_frame(scored).abs().mean()
    np.testing.assert_allclose(table.set_index("feature")["mean_abs_shap"], expected[table["feature"]], rtol=1e-12)
    assert "class &#x27;virginica&#x27;" in page
    assert "probability (virginica)" in built.force_pages[0].read_text()


def test_multiclass_default_explains_predicted_class(tmp_path, iris_model):
    model, X = iris_model
    built = em.report(model, X, tmp_path, sample_rows=0)
    document = json.loads(built.importance_json.read_text())
    predicted = model.predict(X)["prediction"].value_counts()

    assert document["explained_class"] == "predicted"
    assert document["rows_per_class"] == {label: int(count) for label, count in predicted.items()}
    assert built.force_pages == []


def test_report_rejects_all_classes(tmp_path, iris_model):
    model, X = iris_model

    with pytest.raises(InvalidParameterError, match="explained_class='all'"):
        em.report(model, X, tmp_path, explained_class="all")


def test_report_rejects_missing_column(tmp_path, loaded, rows):
    with pytest.raises(InvalidInputError, match="Income"):
        em.report(loaded, rows.drop(columns="Income"), tmp_path)


def test_report_ignores_extra_columns(tmp_path, loaded, rows, built):
    extra = rows.assign(application_id=range(len(rows)))
    again = em.report(loaded, extra, tmp_path, sample_rows=0)

    pd.testing.assert_frame_equal(pd.read_csv(again.importance_csv), pd.read_csv(built.importance_csv))


def test_log_model_logs_report(credit_model, credit_xy):
    X, _ = credit_xy
    with mlflow.start_run() as run:
        info = em.log_model(credit_model, name="credit_model", background_data=X, background_size=80)
    client = mlflow.MlflowClient()
    listed = {Path(item.path).name for item in client.list_artifacts(run.info.run_id, "explanations")}
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="explanations"))
    model_dir = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    background = pd.read_parquet(model_dir / "artifacts" / "explainer_state" / "background.parquet")
    scored = em.load_model(info.model_uri).predict(background)
    expected = shap_frame(scored).abs().mean()
    table = pd.read_csv(folder / "importance.csv").set_index("feature")

    assert listed == REPORT_FILES
    assert len(background) == 80
    np.testing.assert_allclose(table["mean_abs_shap"], expected[table.index], rtol=1e-9)
    assert "logged model &#x27;credit_model&#x27;" in (folder / "report.html").read_text()


def test_log_model_report_options(credit_model, credit_xy):
    X, _ = credit_xy
    with mlflow.start_run() as run:
        em.log_model(
            credit_model,
            name="credit_model",
            background_data=X,
            background_size=40,
            log_report={"explained_class": "bad", "sample_rows": 1, "lime": False},
        )
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="explanations"))

    assert sorted(path.name for path in folder.iterdir()) == sorted(
        ["report.html", "importance.csv", "importance.json", "shap_bar.png", "shap_beeswarm.png", "force_row_0.html"]
    )
    assert set(pd.read_csv(folder / "importance.csv")["explained_class"]) == {"bad"}


def test_log_model_without_report(credit_model, credit_xy):
    X, _ = credit_xy
    with mlflow.start_run() as run:
        em.log_model(credit_model, name="credit_model", background_data=X, background_size=40, log_report=False)

    assert mlflow.MlflowClient().list_artifacts(run.info.run_id, "explanations") == []


def test_log_model_rejects_unknown_report_setting(credit_model, credit_xy):
    X, _ = credit_xy
    with mlflow.start_run() as run:
        with pytest.raises(InvalidParameterError, match="rows_to_show"):
            em.log_model(credit_model, name="credit_model", background_data=X, log_report={"rows_to_show": 2})

    assert mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list") == []


def test_cli_report_on_csv(tmp_path, model_dir, loaded, credit_frame):
    data = tmp_path / "applications.csv"
    credit_frame.iloc[:120].to_csv(data, index=False)  # keeps the Status column, which is ignored
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}

    process = subprocess.run(
        [sys.executable, "-m", "explainable_model", "report", str(model_dir), str(data), str(tmp_path / "out"),
         "--sample-rows", "1", "--no-lime"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    table = pd.read_csv(tmp_path / "out" / "importance.csv")
    expected = shap_frame(loaded.predict(credit_frame.iloc[:120].drop(columns="Status"))).abs().mean()

    assert process.returncode == 0, process.stderr
    assert "Wrote 6 files" in process.stdout
    np.testing.assert_allclose(table.set_index("feature")["mean_abs_shap"], expected[table["feature"]], rtol=1e-9)


def test_cli_report_on_parquet(tmp_path, model_dir, rows, built, capsys):
    data = tmp_path / "applications.parquet"
    rows.to_parquet(data, index=False)

    status = main(["report", str(model_dir), str(data), str(tmp_path / "out"), "--explained-class", "good"])

    assert status == 0
    assert "Wrote 11 files" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "importance.csv"), pd.read_csv(built.importance_csv))


def test_cli_report_missing_file(tmp_path, model_dir, capsys):

    status = main(["report", str(model_dir), str(tmp_path / "absent.csv"), str(tmp_path / "out")])

    assert status == 1
    assert "absent.csv" in capsys.readouterr().err


def test_cli_restores_package_logger(tmp_path, model_dir, capsys):
    logger = logging.getLogger("explainable_model")
    before = (list(logger.handlers), logger.level, logger.propagate)

    main(["report", str(model_dir), str(tmp_path / "absent.csv"), str(tmp_path / "out"), "--verbose"])

    assert (list(logger.handlers), logger.level, logger.propagate) == before


def test_explanation_equals_shap_columns(loaded, rows):
    subset = rows.iloc[:40]
    explanation = loaded.explanation(subset)
    scored = loaded.predict(subset)

    assert isinstance(explanation, shap.Explanation)
    assert explanation.feature_names == list(subset.columns)
    np.testing.assert_array_equal(explanation.values, shap_frame(scored).to_numpy())
    np.testing.assert_array_equal(explanation.base_values, scored["shap_base_value"].to_numpy())
    assert explanation.data[0, list(subset.columns).index("Home")] == subset["Home"].iloc[0]
    assert explanation.data[0, list(subset.columns).index("Income")] == pytest.approx(subset["Income"].iloc[0])


def test_explanation_works_with_shap_plots(loaded, rows):
    explanation = loaded.explanation(rows.iloc[:40])

    for draw in (shap.plots.beeswarm, shap.plots.bar, shap.plots.heatmap):
        draw(explanation, show=False)
        assert plt.gcf().axes
        plt.close("all")
    shap.plots.waterfall(explanation[0], show=False)
    plt.close("all")


def test_explanation_of_all_classes(iris_model):
    model, X = iris_model
    explanation = model.explanation(X.iloc[:10], explained_class="all")
    scored = model.predict(X.iloc[:10], params={"explained_class": "all"})

    assert explanation.shape == (10, 4, 3)
    assert list(explanation.output_names) == ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(
        explanation.values[:, :, 2], scored[[f"shap@virginica:{name}" for name in X.columns]].to_numpy()
    )
    np.testing.assert_array_equal(explanation.base_values[:, 1], scored["shap_base_value@versicolor"].to_numpy())


def test_lime_explanation_adds_up(loaded, rows):
    subset = rows.iloc[:5]
    scored = loaded.predict(subset, params={"explainers": "lime"})
    explanation = em.to_shap_explanation(scored, subset, kind="lime")

    np.testing.assert_allclose(
        explanation.base_values + explanation.values.sum(axis=1), scored["lime_local_prediction"], rtol=1e-9
    )


def test_to_shap_explanation_requires_attributions(loaded, rows):
    scored = loaded.predict(rows.iloc[:5], params={"explainers": "none"})

    with pytest.raises(InvalidInputError, match="no 'shap' attribution columns"):
        em.to_shap_explanation(scored)


def test_log_model_without_run_skips_report(credit_model, credit_xy, caplog):
    X, _ = credit_xy

    with caplog.at_level("WARNING", logger="explainable_model"):
        info = em.log_model(credit_model, name="credit_model", background_data=X, background_size=40)

    assert info.run_id is None
    assert "without its explanation report" in caplog.text
