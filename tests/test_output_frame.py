"""The output frame's JSON records equal pandas' own, value for value and type for type."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier

import explainable_model
from explainable_model.output_frame import OutputFrame
from tests.helpers import credit_pipeline


def _typed_records(records: list[dict]) -> str:
    # NaN != NaN, so records are compared as JSON text with each value's type beside it.
    return json.dumps(
        [[(name, type(value).__name__, value) for name, value in row.items()] for row in records], default=repr
    )


NUMPY_COLUMNS = {
    "prediction": np.array([1, 0, 2]),
    "probability@a:b": np.array([0.25, np.nan, np.inf]),
    "label": pd.Series(["x", None, "z"], dtype=object),
    "mixed": pd.Series([np.float64(1.5), np.int64(2), "text"], dtype=object),
    "flag": np.array([True, False, True]),
    "shap:ünïcødé name": np.array([-0.5, 0.0, 1e-300]),
}
EXTENSION_COLUMNS = {
    "text": pd.Series(["u", None, "w"], dtype="str"),
    "category": pd.Categorical(["p", None, "p"]),
    "nullable": pd.array([1, None, 3], dtype="Int64"),
}


@pytest.mark.parametrize("columns", [NUMPY_COLUMNS, {**NUMPY_COLUMNS, **EXTENSION_COLUMNS}], ids=["numpy", "extension"])
def test_records_match_pandas_per_dtype(columns):
    fast = OutputFrame(columns)

    records = fast.to_dict(orient="records")

    assert _typed_records(records) == _typed_records(pd.DataFrame(columns).to_dict(orient="records"))
    assert records[0]["mixed"] == 1.5
    assert type(records[0]["mixed"]) is float
    assert type(records[0]["prediction"]) is int


def test_other_orients_use_pandas():
    fast = OutputFrame({"a": [1.0, 2.0], "b": ["x", "y"]})

    assert fast.to_dict() == {"a": {0: 1.0, 1: 2.0}, "b": {0: "x", 1: "y"}}
    assert fast.to_dict(orient="list") == {"a": [1.0, 2.0], "b": ["x", "y"]}
    assert type(fast.iloc[:1]) is pd.DataFrame
    assert type(fast.copy()) is pd.DataFrame
    assert type(fast[["a"]]) is pd.DataFrame


def test_predict_output_records_match_pandas(credit_xy, tmp_path):
    features, target = credit_xy
    pipeline = credit_pipeline(features, target, GradientBoostingClassifier(n_estimators=20, random_state=0))
    explainable_model.save_model(pipeline, tmp_path / "model", background_data=features.iloc[:50])
    model = explainable_model.load_model(tmp_path / "model")
    rows = features.iloc[:40]

    output = model.predict(rows, params={"top_k": 3})

    assert isinstance(output, OutputFrame)
    expected = pd.DataFrame(output).to_dict(orient="records")
    assert _typed_records(output.to_dict(orient="records")) == _typed_records(expected)
