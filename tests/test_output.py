"""Output column names: built from any feature or class name, parsed back exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from explainable_model.output import SHAP, SHAP_BASE_VALUE, column_name, parse_column

HOSTILE_NAMES = ["Income", "monthly income", "a.b", "ünïcødé", "shap_base_value", "shap:x", "x@y", "%3A", "", ":"]


@pytest.mark.parametrize("feature", HOSTILE_NAMES)
@pytest.mark.parametrize("label", [None, "bad", "a:b", "x@y", "100%", 3])
def test_column_name_round_trip(feature, label):
    parsed = parse_column(column_name(SHAP, feature, label))
    assert parsed.kind == SHAP
    assert parsed.feature == feature
    assert parsed.class_label == (None if label is None else str(label))


@given(feature=st.text(), label=st.one_of(st.none(), st.text()))
def test_column_name_round_trip_any_text(feature, label):
    parsed = parse_column(column_name(SHAP, feature, label))
    assert (parsed.kind, parsed.class_label, parsed.feature) == (SHAP, label, feature)


def test_feature_named_base_value_has_own_column():
    assert column_name(SHAP, "shap_base_value") != column_name(SHAP_BASE_VALUE)


def test_labels_colliding_after_escape_stay_distinct():
    assert column_name(SHAP, "f", "a:b") != column_name(SHAP, "f", "a%3Ab")


def test_parse_base_value_of_class():
    assert parse_column("shap_base_value@bad") == parse_column(column_name(SHAP_BASE_VALUE, class_label="bad"))
