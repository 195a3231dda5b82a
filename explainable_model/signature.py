"""The model signature: input schema from the features, params schema, output schema."""

from __future__ import annotations

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType
from pandas.api import types as ptypes

from explainable_model.features import BOOLEAN, CATEGORICAL, FeatureSpec
from explainable_model.params import ExplanationSettings, param_schema


def input_type(spec: FeatureSpec) -> str | AnyType:
    """Return the MLflow type of a feature's column.

    An integer feature whose estimator accepts missing values is declared ``any``. MLflow
    3.17 rejects a null in a ``long`` column before the model sees it, and rejects int64
    values in a ``double`` column ("Can not safely convert int64 to float64"), so no typed
    declaration takes both a training frame's int64 column and a null. The model's own
    input check still requires numbers there. A ``category`` feature is ``any`` too, because
    MLflow's ``string`` type rejects a pandas ``category`` column, the dtype it was trained on.
    """
    if spec.dtype == "category":
        return AnyType()
    if spec.kind == CATEGORICAL:
        return "string"
    if spec.kind == BOOLEAN:
        return "boolean"
    if spec.dtype == "int64":
        return AnyType() if spec.accepts_missing else "long"
    return "double"


def input_schema(features: list[FeatureSpec]) -> Schema:
    """Return the input schema: one required column per feature, by name."""
    return Schema([ColSpec(input_type(spec), spec.name) for spec in features])


def _output_type(values: pd.Series) -> str:
    dtype = values.dtype
    if ptypes.is_bool_dtype(dtype):
        return "boolean"
    if ptypes.is_integer_dtype(dtype):
        return "long"
    if ptypes.is_float_dtype(dtype):
        return "double"
    if ptypes.is_object_dtype(dtype) and values.map(lambda v: v is None or isinstance(v, float)).all():
        return "double"
    return "string"


def output_schema(example_output: pd.DataFrame) -> Schema:
    """Return the output schema of a predict result.

    Output columns are not required, so values may be null (non-finite numbers are returned
    as null) and a Spark struct built from the schema has nullable fields.
    """
    return Schema(
        [ColSpec(_output_type(example_output[name]), name, required=False) for name in example_output.columns]
    )


def build_signature(
    features: list[FeatureSpec], settings: ExplanationSettings, example_output: pd.DataFrame
) -> ModelSignature:
    """Return the full signature of an explainable model."""
    return ModelSignature(
        inputs=input_schema(features),
        outputs=output_schema(example_output),
        params=param_schema(settings),
    )
