"""Batch scoring: the ``explainable-model score`` command and ``score_files``, on real files and processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import explainable_model as em
from explainable_model.batch import MANIFEST_NAME, BatchError, BatchInputError, score_files

ROOT = Path(__file__).resolve().parents[1]
ROWS = 1003  # not a multiple of any chunk size used here


def _frame(rows: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "key": np.arange(start, start + rows) * 7 + 3,
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 10, rows),
            "c": rng.choice(["x", "y", "z"], rows),
        }
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small gradient boosting Pipeline saved as an explainable model in a local folder."""
    train = _frame(400, seed=0).drop(columns="key")
    target = ((train["a"] + train["b"] / 5 + (train["c"] == "x")) > 1.5).astype(int)
    pipeline = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="error"), ["c"]), remainder="passthrough"),
        GradientBoostingClassifier(n_estimators=15, random_state=0),
    ).fit(train, target)
    path = tmp_path_factory.mktemp("batch") / "model"
    em.save_model(pipeline, path, background_data=train)
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    return em.load_model(str(model_dir))


def _cli(*args: str, extra_env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "explainable_model", "score", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        **kwargs,
    )


def _read_parts(output: Path) -> pd.DataFrame:
    parts = sorted(output.glob("part-*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def _assert_matches_predict(result: pd.DataFrame, frame: pd.DataFrame, model, params=None) -> None:
    expected = model.predict(frame.drop(columns="key"), params)
    assert list(result.columns) == list(frame.columns) + list(expected.columns)
    assert result["key"].tolist() == frame["key"].tolist()
    for name in expected.columns:
        if expected[name].dtype.kind == "f":
            np.testing.assert_allclose(result[name].to_numpy(float), expected[name].to_numpy(float), rtol=0, atol=1e-12)
        else:
            assert result[name].astype(str).tolist() == expected[name].astype(str).tolist(), name


def test_csv_file_in_process_equals_predict(tmp_path, model_dir, model):
    frame = _frame(ROWS, seed=1)
    frame.to_csv(tmp_path / "in.csv", index=False)
    summary = score_files(str(model_dir), tmp_path / "in.csv", tmp_path / "out", chunk_size=128, params={"top_k": 2})
    assert summary.rows == ROWS
    assert len(summary.parts) == 8  # 7 full chunks and one of 107 rows
    _assert_matches_predict(_read_parts(tmp_path / "out"), frame, model, {"top_k": 2})
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    chunks = manifest["files"][str((tmp_path / "in.csv").resolve())]["chunks"]
    assert [chunks[str(i)]["rows"] for i in range(8)] == [128] * 7 + [107]


def test_cli_folder_of_parquet_and_csv(tmp_path, model_dir, model):
    frames = [_frame(500, seed=2, start=0), _frame(ROWS, seed=3, start=500)]
    folder = tmp_path / "in"
    folder.mkdir()
    frames[0].to_parquet(folder / "a.parquet", index=False)
    frames[1].to_csv(folder / "b.csv", index=False)
    (folder / "notes.txt").write_text("ignored")
    done = _cli(str(model_dir), str(folder), str(tmp_path / "out"), "--chunk-size", "300", "--explainers", "shap")
    assert done.returncode == 0, done.stderr
    assert f"Scored {500 + ROWS} rows" in done.stdout
    _assert_matches_predict(_read_parts(tmp_path / "out"), pd.concat(frames, ignore_index=True), model)


def test_cli_explained_class_option(tmp_path, model_dir, model):
    frame = _frame(300, seed=5)
    frame.to_parquet(tmp_path / "in.parquet", index=False)

    options = ("--explained-class", "0", "--top-k", "2")
    done = _cli(str(model_dir), str(tmp_path / "in.parquet"), str(tmp_path / "out"), *options)

    assert done.returncode == 0, done.stderr
    result = _read_parts(tmp_path / "out")
    assert set(result["explained_class"]) == {"0"}
    _assert_matches_predict(result, frame, model, {"explained_class": "0", "top_k": 2})


def test_progress_log_counts_rejected_rows_apart(tmp_path, model_dir, caplog):
    bad = _frame(300, seed=8).astype(object)
    bad.loc[10, "a"] = "abc"
    bad.to_csv(tmp_path / "bad.csv", index=False)

    with caplog.at_level(logging.INFO, logger="explainable_model.batch"):
        score_files(str(model_dir), tmp_path / "bad.csv", tmp_path / "out", chunk_size=100, rejects=tmp_path / "r.csv")

    lines = [record.getMessage() for record in caplog.records if " chunk " in record.getMessage()]
    assert "chunk 2 done; 299 rows scored so far, 1 rejected" in lines[-1]


def test_kill_and_resume_has_every_row_once(tmp_path, model_dir):
    frame = _frame(6000, seed=4)
    frame.to_parquet(tmp_path / "in.parquet", index=False, row_group_size=700)
    output = tmp_path / "out"
    args = (str(model_dir), str(tmp_path / "in.parquet"), str(output), "--chunk-size", "40")
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "explainable_model", "score", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while not (output / "part-00001.parquet").exists():
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no part appeared within 90 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert len(list(output.glob("part-*.parquet"))) < 150  # killed part way
    (output / "part-99999.parquet.tmp").write_bytes(b"partial")  # as a kill during a write leaves

    done = _cli(*args)
    assert done.returncode == 0, done.stderr
    assert not list(output.glob("*.tmp"))
    keys = _read_parts(output)["key"]
    assert keys.is_unique and sorted(keys) == sorted(frame["key"])
    assert len(list(output.glob("part-*.parquet"))) == 150


def test_malformed_value_names_file_row_and_column(tmp_path, model_dir):
    frame = _frame(ROWS, seed=5).astype(object)
    frame.loc[517, "a"] = "abc"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    done = _cli(str(model_dir), str(tmp_path / "bad.csv"), str(tmp_path / "out"), "--chunk-size", "200")
    assert done.returncode == 1
    assert "bad.csv, row 517, column 'a'" in done.stderr
    assert "expects numbers" in done.stderr
    # Chunks 0 and 1 (rows 0 to 399) were completed before the bad chunk and stay.
    assert _read_parts(tmp_path / "out")["key"].tolist() == frame["key"].iloc[:400].tolist()


def test_missing_column_asks_to_fix_file(tmp_path, model_dir):
    _frame(50, seed=6).drop(columns="b").to_csv(tmp_path / "no_b.csv", index=False)

    done = _cli(str(model_dir), str(tmp_path / "no_b.csv"), str(tmp_path / "out"))

    assert done.returncode == 1
    assert "feature columns ['b'] are missing" in done.stderr
    assert "Fix the file" in done.stderr
    # --rejects sets rows aside, so it cannot help with a missing column.
    assert "--rejects" not in done.stderr


def test_unknown_model_version_is_one_line(tmp_path):
    (tmp_path / "in.csv").write_text("a,b,c\n1.0,2,x\n")
    store = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}

    done = _cli("models:/credit/9", str(tmp_path / "in.csv"), str(tmp_path / "out"), extra_env=store)

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "credit" in done.stderr
    assert f"(tracking URI {store['MLFLOW_TRACKING_URI']}" in done.stderr
    assert "Traceback" not in done.stderr


def test_rejects_mode_writes_bad_rows_and_goes_on(tmp_path, model_dir, model):
    frame = _frame(ROWS, seed=6)
    bad = frame.astype(object)
    bad.loc[517, "a"] = "abc"
    bad.loc[800, "c"] = "unseen"
    bad.loc[801, "b"] = 2.5
    bad.to_csv(tmp_path / "bad.csv", index=False)
    summary = score_files(
        str(model_dir), tmp_path / "bad.csv", tmp_path / "out", chunk_size=256, rejects=tmp_path / "rejects.parquet"
    )
    assert summary.rows == ROWS - 3
    assert summary.rejected == 3
    rejects = pd.read_parquet(tmp_path / "rejects.parquet")
    assert rejects["_row"].tolist() == [517, 800, 801]
    assert rejects["_column"].tolist()[0::2] == ["a", "b"]
    assert rejects.loc[0, "a"] == "abc"
    assert rejects.loc[1, "c"] == "unseen"
    good = frame.drop(index=[517, 800, 801]).reset_index(drop=True)
    _assert_matches_predict(_read_parts(tmp_path / "out"), good, model)
    with pytest.raises(BatchInputError, match=r"bad\.csv, row 517, column 'a'"):
        score_files(str(model_dir), tmp_path / "bad.csv", tmp_path / "out2", chunk_size=256)


def test_two_workers_equal_one(tmp_path, model_dir):
    _frame(ROWS, seed=7).to_parquet(tmp_path / "in.parquet", index=False)
    one = score_files(str(model_dir), tmp_path / "in.parquet", tmp_path / "one", chunk_size=100)
    two = score_files(str(model_dir), tmp_path / "in.parquet", tmp_path / "two", chunk_size=100, workers=2)
    assert one.rows == two.rows == ROWS
    pd.testing.assert_frame_equal(_read_parts(tmp_path / "one"), _read_parts(tmp_path / "two"))


def test_resume_with_other_params_or_model_is_refused(tmp_path, model_dir):
    _frame(300, seed=8).to_csv(tmp_path / "in.csv", index=False)
    score_files(str(model_dir), tmp_path / "in.csv", tmp_path / "out", chunk_size=100, params={"top_k": 1})
    with pytest.raises(BatchError, match="different parameters"):
        score_files(str(model_dir), tmp_path / "in.csv", tmp_path / "out", chunk_size=100, params={"top_k": 2})
    done = _cli(str(model_dir), str(tmp_path / "in.csv"), str(tmp_path / "out"), "--chunk-size", "100")
    assert done.returncode == 1
    assert "--no-resume" in done.stderr
    again = score_files(str(model_dir), tmp_path / "in.csv", tmp_path / "out", chunk_size=100, params={"top_k": 1})
    assert again.rows == 300
    assert again.rows_this_run == 0
    fresh = score_files(str(model_dir), tmp_path / "in.csv", tmp_path / "out", chunk_size=100, resume=False)
    assert fresh.rows_this_run == 300
    assert "reason_feature_1" not in _read_parts(tmp_path / "out").columns
