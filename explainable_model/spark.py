"""Score Spark DataFrames with an explainable model through ``mlflow.pyfunc.spark_udf``.

::

    from explainable_model.spark import score

    scored = score(spark_df, "models:/credit/1", params={"top_k": 3})
    scored.select("id", "explanation.*")              # one column per output field
    scored.select(field("shap:Income"))                # one field; names with dots need backticks

:func:`score` returns the input DataFrame plus one struct column, ``explanation`` by default,
whose fields are the columns that ``predict`` returns (``prediction``, ``shap:<feature>`` and so
on), all nullable. :func:`result_type` builds that struct for a model and a set of request
parameters. pyspark is imported only when these functions run; install it with the ``spark``
extra (``pip install "explainable_model[spark]"``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import mlflow.artifacts
import mlflow.pyfunc
import pandas as pd
from mlflow.models import Model

from explainable_model.exceptions import ExplainableModelError, InvalidInputError
from explainable_model.model import FLAVOR_NAME
from explainable_model.output import (
    EXPLAINED_CLASS,
    PREDICTION,
    REASON_FEATURE,
    REASON_VALUE,
    SHAP_UNITS,
    parse_column,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructType

logger = logging.getLogger(__name__)

#: Name of the struct column that :func:`score` adds.
EXPLANATION_COLUMN = "explanation"

# Request parameters that change which output columns exist; the others only change values.
_LAYOUT_PARAMS = ("explainers", "top_k", "explained_class")
_TEXT_KINDS = (EXPLAINED_CLASS, SHAP_UNITS, REASON_FEATURE, REASON_VALUE)
_MLFLOW_TO_SPARK = {
    "string": "StringType",
    "double": "DoubleType",
    "float": "FloatType",
    "long": "LongType",
    "integer": "IntegerType",
    "boolean": "BooleanType",
}


def _pyspark_types() -> Any:
    try:
        from pyspark.sql import types
    except ImportError as error:
        raise ImportError(
            "explainable_model.spark needs pyspark, which is not installed. Install the spark extra: "
            "pip install 'explainable_model[spark]' (pyspark 4 also needs Java 17 or later)."
        ) from error
    return types


def quote(name: str) -> str:
    """Return a column or field name quoted with backticks for Spark column expressions.

    Spark reads a dot in an unquoted name as a struct access, so ``shap:Monthly income.usd``
    must be written ```shap:Monthly income.usd``` in ``col()``, ``selectExpr`` and SQL.
    Backticks inside the name are doubled.

    Parameters
    ----------
    name : str
        A column or struct field name, exactly as it is.

    Returns
    -------
    str
        The name between backticks.
    """
    return "`" + name.replace("`", "``") + "`"


def field(name: str, column: str = EXPLANATION_COLUMN) -> Column:
    """Return one field of the struct column that :func:`score` adds, aliased to its own name.

    Parameters
    ----------
    name : str
        An output column name, such as ``"prediction"`` or ``"shap:Monthly income.usd"``.
    column : str
        The struct column; ``"explanation"`` unless ``score`` was given another ``output_column``.

    Returns
    -------
    pyspark.sql.Column
    """
    _pyspark_types()
    from pyspark.sql import functions

    return functions.col(f"{quote(column)}.{quote(name)}").alias(name)


def _local_model(model_uri: str, dst_path: str) -> str:
    """Download the model once, so that the driver and ``spark_udf`` read the same files."""
    path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst_path)
    model = Model.load(path)
    if FLAVOR_NAME not in model.flavors:
        raise ExplainableModelError(
            f"The model at {model_uri!r} has no {FLAVOR_NAME!r} flavor; explainable_model.spark scores only "
            "models saved by explainable_model. Use mlflow.pyfunc.spark_udf for other models."
        )
    if model.signature is None or model.signature.outputs is None:
        raise ExplainableModelError(
            f"The model at {model_uri!r} has no output schema in its signature; save it again with "
            "explainable_model.save_model or log_model."
        )
    return path


def _spark_type(types: Any, mlflow_type: Any) -> DataType:
    name = getattr(mlflow_type, "name", str(mlflow_type))
    if name not in _MLFLOW_TO_SPARK:
        return types.StringType()
    return getattr(types, _MLFLOW_TO_SPARK[name])()


def _column_names(path: str, model: Model, params: dict[str, Any]) -> list[str]:
    """Return the output columns for ``params``, from one scored input example row."""
    from explainable_model.flavor import load_model

    example = model.load_input_example(path)
    if not isinstance(example, pd.DataFrame):
        raise ExplainableModelError(
            "The model stores no input example, which is needed to find the output columns of "
            f"params {params}; save it again with explainable_model.save_model."
        )
    layout = {key: params[key] for key in _LAYOUT_PARAMS if key in params}
    return list(load_model(path).predict(example.iloc[:1], params=layout).columns)


def _result_type(path: str, params: dict[str, Any] | None) -> StructType:
    types = _pyspark_types()
    model = Model.load(path)
    outputs = {spec.name: spec.type for spec in model.signature.outputs.inputs}
    if params and any(key in params for key in _LAYOUT_PARAMS):
        names = _column_names(path, model, params)
    else:
        names = list(outputs)
    fields = []
    for name in names:
        kind = parse_column(name).kind.rstrip("0123456789").rstrip("_")
        if name in outputs:
            data_type = _spark_type(types, outputs[name])
        elif kind in _TEXT_KINDS:
            data_type = types.StringType()
        elif kind == PREDICTION:
            data_type = _spark_type(types, outputs.get(PREDICTION, "string"))
        else:
            data_type = types.DoubleType()
        # Every field is nullable: non-finite values and missing reason values come back as
        # null, and Arrow rejects a null in a non-nullable field (ARROW_TYPE_MISMATCH).
        fields.append(types.StructField(name, data_type, nullable=True))
    return types.StructType(fields)


def result_type(model_uri: str, params: dict[str, Any] | None = None) -> StructType:
    """Return the Spark struct type of an explainable model's output, every field nullable.

    The fields are the model's output columns, in order, with the types of its signature. The
    struct that MLflow's ``Schema.as_spark_schema()`` builds marks a field non-nullable when
    its column is required, so Spark fails on the first null value with ``ARROW_TYPE_MISMATCH``.
    Here every field is nullable.

    Parameters
    ----------
    model_uri : str
        Any MLflow model URI of a model saved by explainable_model.
    params : dict, optional
        Request parameters. ``explainers``, ``top_k`` and ``explained_class`` change which
        columns exist, so when one is given the model is loaded and scores one stored input
        example row to list them.

    Returns
    -------
    pyspark.sql.types.StructType

    Raises
    ------
    ImportError
        If pyspark is not installed.
    ExplainableModelError
        If the model was not saved by explainable_model.
    InvalidParameterError
        If a parameter is unknown or out of range.
    """
    _pyspark_types()
    with tempfile.TemporaryDirectory(prefix="explainable_model_spark_") as tmp:
        return _result_type(_local_model(model_uri, tmp), params)


def _feature_columns(spark_df: DataFrame, model: Model, columns: Sequence[str] | None) -> list[Column]:
    features = model.signature.inputs.input_names()
    names = list(features if columns is None else columns)
    if len(names) != len(features):
        raise InvalidInputError(
            f"columns has {len(names)} names, but the model has {len(features)} features "
            f"{features}; pass one column per feature, in that order."
        )
    present = spark_df.columns
    missing = [name for name in names if name not in present]
    if missing:
        raise InvalidInputError(
            f"The Spark DataFrame has no column {missing}; it has {present}. Rename the columns, or "
            "pass columns=[...] naming one column per model feature, in the model's feature order."
        )
    # Quoted, since Spark reads a dot in a name as a struct access.
    return [spark_df[quote(name)] for name in names]


def score(
    spark_df: DataFrame,
    model_uri: str,
    params: dict[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    env_manager: str = "local",
    output_column: str = EXPLANATION_COLUMN,
) -> DataFrame:
    """Score a Spark DataFrame: its rows plus a struct column of predictions and attributions.

    The model runs in Spark's Python workers through ``mlflow.pyfunc.spark_udf``; each row gets
    the same values as ``explainable_model.load_model(model_uri).predict`` returns for it.

    Parameters
    ----------
    spark_df : pyspark.sql.DataFrame
        Rows to score. Other columns (keys, labels) are kept as they are.
    model_uri : str
        Any MLflow model URI of a model saved by explainable_model.
    params : dict, optional
        Request parameters (``top_k``, ``explainers``, ``explained_class``, ...), passed to
        every ``predict`` call through ``spark_udf(params=...)``.
    columns : sequence of str, optional
        The Spark columns holding the model's features, in the model's feature order (see
        ``model.signature.inputs.input_names()``). By default, the columns named like the features.
    env_manager : {"local", "virtualenv", "uv", "conda"}
        Passed to ``spark_udf``: ``"local"`` runs the model in the workers' current Python
        environment, the others build the model's logged environment first.
    output_column : str
        Name of the added struct column.

    Returns
    -------
    pyspark.sql.DataFrame
        ``spark_df`` with one more column, ``output_column``, of type :func:`result_type`.
        Expand it with ``df.select("*", "explanation.*")``; refer to one field with
        :func:`field`, or with backticks as in ``col("`explanation`.`shap:a.b`")``.

    Raises
    ------
    ImportError
        If pyspark is not installed.
    InvalidInputError
        If a feature column is missing, or ``output_column`` already exists.
    InvalidParameterError
        If a parameter is unknown or out of range.
    """
    _pyspark_types()
    if output_column in spark_df.columns:
        raise InvalidInputError(
            f"The Spark DataFrame already has a column {output_column!r}; pass another output_column."
        )
    with tempfile.TemporaryDirectory(prefix="explainable_model_spark_") as tmp:
        path = _local_model(model_uri, tmp)
        model = Model.load(path)
        if params:
            # Check names and values on the driver with the strict checks of
            # load_model().predict: spark_udf drops undeclared names with a warning only.
            from explainable_model.flavor import load_model

            load_model(path).engine.options(params, strict=True)
        struct = _result_type(path, params)
        inputs = _feature_columns(spark_df, model, columns)
    logger.info("Scoring with %s: %d output fields, params %s.", model_uri, len(struct.fields), params)
    udf = mlflow.pyfunc.spark_udf(
        spark_df.sparkSession,
        model_uri,
        result_type=struct,
        env_manager=env_manager,
        params=params,
    )
    scored = spark_df.withColumn(output_column, udf(*inputs))
    return _restore_null_text(scored, output_column, struct)


def _restore_null_text(scored: DataFrame, output_column: str, struct: StructType) -> DataFrame:
    """Turn the text "None" back into null in reason value fields.

    spark_udf converts a text field with ``astype(numpy.str_)``, which writes a null as the text
    ``"None"`` (MLflow 3.17). A reason value is null when the row's value is missing, so
    ``"None"`` is read back as null there. NOTE: a category whose text is "None" also becomes null.
    """
    from pyspark.sql import functions

    names = [f.name for f in struct.fields if f.name.startswith(f"{REASON_VALUE}_")]
    if not names:
        return scored
    column = functions.col(quote(output_column))
    fields = [
        functions.when(column.getField(f.name) == "None", None).otherwise(column.getField(f.name)).alias(f.name)
        if f.name in names
        else column.getField(f.name).alias(f.name)
        for f in struct.fields
    ]
    return scored.withColumn(output_column, functions.struct(*fields))
