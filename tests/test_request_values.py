"""JSON request values that MLflow's parsing would change silently: which are rejected, and how."""

from __future__ import annotations

import json

import pytest

from explainable_model.exceptions import InvalidInputError
from explainable_model.features import FeatureSpec
from explainable_model.request_values import check_json_values

FEATURES = [
    FeatureSpec("Age", "numeric", "int64"),
    FeatureSpec("Income", "numeric", "float64", accepts_missing=True),
    FeatureSpec("Home", "categorical", "str"),
    FeatureSpec("Flag", "boolean", "bool"),
]
GOOD = {"Age": 34, "Income": 129.5, "Home": "rent", "Flag": True}


def _split(*rows: dict) -> dict:
    columns = list(GOOD)
    return {"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns] for row in rows]}}


REJECTED = {
    "fraction in split": (
        _split(GOOD, {**GOOD, "Age": 33.75}),
        "Column 'Age' expects whole numbers (int64), but row 1",
    ),
    "fraction in records": ({"dataframe_records": [{**GOOD, "Age": 0.5}]}, "Column 'Age' expects whole numbers"),
    "fraction in instances": ({"instances": [GOOD, GOOD, {**GOOD, "Age": -2.25}]}, "but row 2 has a fraction"),
    "fraction in inputs columns": ({"inputs": {**{k: [v] for k, v in GOOD.items()}, "Age": [1, 7.5]}}, "row 1"),
    "fraction in one-row inputs": ({"inputs": {**GOOD, "Age": 1e-3}}, "Column 'Age' expects whole numbers"),
    "object in text": (
        _split({**GOOD, "Home": {"a": 1}}),
        "Column 'Home' expects text (str), but row 0 contains a JSON object",
    ),
    "list in text": ({"dataframe_records": [{**GOOD, "Home": ["rent"]}]}, "contains a JSON list"),
}

ACCEPTED = {
    "good split": _split(GOOD, GOOD),
    "whole float in integer column": _split({**GOOD, "Age": 34.0}),
    "null in integer column": _split({**GOOD, "Age": None}),
    "fraction in float column": _split({**GOOD, "Income": 0.125}),
    "bool in numeric column": _split({**GOOD, "Income": True}),
    "number in text column": _split({**GOOD, "Home": 3.5}),
    "unknown column": {"dataframe_records": [{**GOOD, "Other": 1.5}]},
    "row shorter than columns": {"dataframe_split": {"columns": list(GOOD), "data": [[1.5]]}},
    "two input fields": {**_split({**GOOD, "Age": 1.5}), "dataframe_records": [GOOD]},
    "split without columns": {"dataframe_split": {"data": [[1.5, 1.0, "rent", True]]}},
    "list of lists": {"inputs": [[1.5, 1.0, "rent", True]]},
    "json list body": [GOOD],
}


@pytest.mark.parametrize("case", REJECTED)
def test_value_rejected(case):
    payload, fragment = REJECTED[case]

    with pytest.raises(InvalidInputError) as raised:
        check_json_values(json.dumps(payload).encode(), FEATURES)

    assert fragment in str(raised.value)


@pytest.mark.parametrize("case", ACCEPTED)
def test_value_left_to_mlflow(case):
    check_json_values(json.dumps(ACCEPTED[case]).encode(), FEATURES)


@pytest.mark.parametrize("body", [b"", b"{not json", b"\xff\xfe", b"null"])
def test_unreadable_body_left_to_mlflow(body):
    check_json_values(body, FEATURES)


def test_message_has_no_value():
    payload = _split({**GOOD, "Age": 4821.75})

    with pytest.raises(InvalidInputError) as raised:
        check_json_values(json.dumps(payload).encode(), FEATURES)

    assert "4821" not in str(raised.value)
