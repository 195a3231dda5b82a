"""Feature kinds and the input check: columns by name, types, missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explainable_model.exceptions import InvalidInputError
from explainable_model.features import CATEGORICAL, NUMERIC, coerce_frame, describe_features


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "age": np.array([30, 40, 50], dtype="int64"),
            "income": [1.5, np.nan, 3.0],
            "city": pd.array(["a", "b", None], dtype="str"),
        }
    )


@pytest.fixture
def features(frame):
    specs = describe_features(frame)
    for spec in specs:
        spec.accepts_missing = spec.name != "age"
    return specs


@pytest.mark.parametrize("dtype", ["str", "object", "category", "string"])
def test_text_columns_are_categorical_for_any_dtype(dtype):
    frame = pd.DataFrame({"city": pd.Series(["a", "b"], dtype=dtype), "n": [1, 2]})

    kinds = {spec.name: spec.kind for spec in describe_features(frame)}

    assert kinds == {"city": CATEGORICAL, "n": NUMERIC}


def test_columns_matched_by_name_not_position(frame, features):
    reordered = frame[["city", "income", "age"]]

    coerced = coerce_frame(reordered, features)

    assert list(coerced.columns) == ["age", "income", "city"]
    assert coerced["age"].tolist() == [30, 40, 50]


def test_missing_and_unexpected_columns_named(frame, features):
    bad = frame.drop(columns="income").assign(extra=1)

    with pytest.raises(InvalidInputError, match=r"missing columns: 'income'.*unexpected columns: 'extra'"):
        coerce_frame(bad, features)


def test_text_in_numeric_column_names_column(frame, features):
    bad = frame.astype({"income": object})
    bad.loc[1, "income"] = "abc"

    with pytest.raises(InvalidInputError, match=r"Column 'income' expects numbers.*row 1"):
        coerce_frame(bad, features)


def test_numeric_text_is_converted(frame, features):
    text = frame.astype({"income": object})
    text.loc[0, "income"] = "1.5"

    assert coerce_frame(text, features)["income"].iloc[0] == 1.5


def test_missing_value_rejected_where_estimator_cannot_take_it(frame, features):
    bad = frame.astype({"age": "float64"})
    bad.loc[2, "age"] = np.nan

    with pytest.raises(InvalidInputError, match=r"Column 'age' has a missing value at row 2"):
        coerce_frame(bad, features)


def test_infinity_rejected(frame, features):
    bad = frame.copy()
    bad.loc[0, "income"] = np.inf

    with pytest.raises(InvalidInputError, match=r"Column 'income' has an infinite value at row 0"):
        coerce_frame(bad, features)


def test_fraction_in_integer_column_rejected(frame, features):
    bad = frame.astype({"age": "float64"})
    bad.loc[0, "age"] = 30.5

    with pytest.raises(InvalidInputError, match=r"Column 'age' expects whole numbers"):
        coerce_frame(bad, features)


def test_empty_frame_rejected(frame, features):
    with pytest.raises(InvalidInputError, match="no rows"):
        coerce_frame(frame.iloc[:0], features)


def test_not_a_frame_rejected(features):
    with pytest.raises(InvalidInputError, match="pandas DataFrame"):
        coerce_frame(np.zeros((2, 3)), features)


def test_unknown_category_rejected():
    frame = pd.DataFrame({"city": pd.Series(["a", "b"], dtype="category")})
    features = describe_features(frame)

    with pytest.raises(InvalidInputError, match=r"Column 'city' at row 1 has a value that is not one of its 2"):
        coerce_frame(pd.DataFrame({"city": ["a", "z"]}), features)


@pytest.mark.parametrize("huge", [1e20, 2**63 - 1, 2**63])
def test_huge_integer_not_wrapped(huge):
    frame = pd.DataFrame({"n": np.array([1, 2], dtype="int64")})
    features = describe_features(frame)

    coerced = coerce_frame(pd.DataFrame({"n": pd.Series([huge, 1], dtype=object)}), features)

    assert coerced["n"].iloc[0] == pytest.approx(float(huge))
