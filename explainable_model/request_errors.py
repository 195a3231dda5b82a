"""Error messages of a served model that name the problem without repeating the request.

MLflow's scoring server (mlflow 3.17) builds many of its error messages from the request. It
quotes a body that is not JSON whole, prefixes the message of a failed ``predict`` with the
whole input frame, and quotes the offending value of a failed type conversion. :func:`clean_message` maps each
such message to a fixed text that keeps only what the model itself defines: the column names of
its signature and the supported formats. :class:`RequestRecord` carries the message of an error
that the serving layer raised itself, which is already free of request values.
"""

from __future__ import annotations

import contextvars
import json
import re
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

INPUT_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CONTENT_TYPES = ("application/json", "text/csv", "application/vnd.apache.parquet")
ROUTES = ("/ping", "/health", "/version", "/invocations")

# MLflow's messages that quote request content, by their fixed leading text, and the message
# that replaces each. The texts are those of mlflow.pyfunc.scoring_server and
# mlflow.utils.proto_json_utils in mlflow 3.17.
_FORMAT_HELP = (
    "The request must be a JSON object with exactly one of the fields "
    + ", ".join(INPUT_FORMATS)
    + ", and optionally 'params'."
)
_CSV_FAILURE = "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid CSV"
_KNOWN_MESSAGES: tuple[tuple[str, str], ...] = (
    ("Ensure that input is a valid UTF-8 encoded string", "The request body is not valid UTF-8 text."),
    ("The input must be a JSON dictionary with exactly one of the input fields", _FORMAT_HELP),
    (
        "Dataframe records format must be a list of records",
        "Field 'dataframe_records' must be a list of records, each a JSON object of column names and values.",
    ),
    (
        "Provided dataframe_records field is not a valid dataframe",
        "Field 'dataframe_records' is not a valid table; send a list of JSON objects of column names and values.",
    ),
    (
        "Dataframe split format must",
        "Field 'dataframe_split' must be a JSON object with a 'data' field and optionally 'columns' and 'index'.",
    ),
    (
        "Provided dataframe_split field is not a valid dataframe",
        "Field 'dataframe_split' is not a valid table; every row of 'data' needs one value per entry of 'columns'.",
    ),
    (
        _CSV_FAILURE,
        "The CSV body could not be read as a table of the model's columns and types; send a header row and "
        "one value of the declared type per column.",
    ),
    (
        "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid Parquet",
        "The Parquet body could not be read as a table.",
    ),
    (
        "Request payload must be a dictionary with 'inputs' key",
        "The request must be a JSON object with an 'inputs' field.",
    ),
)
_CONVERSION = re.compile(r"Failed to convert column (?P<column>.+?) (?:to type|from type)")


@dataclass
class RequestRecord:
    """The serving layer's record of one request: the clean error it raised, if any."""

    message: str | None = None
    error_code: str = "BAD_REQUEST"
    status: int = 400

    def fail(self, message: str, error_code: str, status: int) -> None:
        self.message, self.error_code, self.status = message, error_code, status


CURRENT_REQUEST: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar(
    "explainable_model_request", default=None
)


def error_code_name(error: MlflowException) -> str:
    """Return the name of an MlflowException's error code, such as ``"INVALID_PARAMETER_VALUE"``."""
    code = error.error_code
    if isinstance(code, int):
        return ErrorCode.Name(code)
    return str(code)


def json_error_detail(body: bytes) -> str:
    """Return where a JSON body stops being valid, without quoting it."""
    try:
        json.loads(body)
    except json.JSONDecodeError as error:
        return f"{error.msg} at line {error.lineno}, column {error.colno}"
    except UnicodeDecodeError:
        return "it is not valid UTF-8"
    except ValueError:
        return "it could not be parsed"
    return "it could not be parsed"


def _input_fields_found(body: bytes) -> str:
    """Return which input fields a JSON object body has, as a sentence, or "" for another body."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(payload, dict):
        return "The body is not a JSON object. "
    found = [name for name in INPUT_FORMATS if name in payload]
    if not found:
        return "The request has none of the input fields. "
    return f"The request has {len(found)} input fields ({', '.join(found)}). "


def clean_message(
    status: int, message: str, column_types: dict[str, str], body: bytes, timeout_s: float | None
) -> str:
    """Return a message for an error response that contains none of the request's values.

    Parameters
    ----------
    status : int
        The response's HTTP status.
    message : str
        The message that MLflow's scoring server wrote.
    column_types : dict of str to str
        The input columns of the model's signature and their types: the only names taken over
        from ``message``.
    body : bytes
        The request body, used only to locate a JSON syntax error.
    timeout_s : float or None
        The server's request timeout, named in the message of a 504.
    """
    if status == 404:
        return f"Not found; the routes are {', '.join(ROUTES)}."
    if status == 405:
        return "Method not allowed; /invocations takes POST, the other routes take GET."
    if status == 415:
        return (
            "Unsupported content type; send "
            + ", ".join(CONTENT_TYPES)
            + ", with no parameters other than charset=utf-8."
        )
    if status == 504:
        limit = f" of {timeout_s:g} s" if timeout_s else ""
        return f"The request took longer than the server's timeout{limit}; send fewer rows or cheaper params."
    text = message.removeprefix("Invalid input. ")
    if text.startswith("Ensure that input is a valid JSON formatted string"):
        return f"The request body is not valid JSON: {json_error_detail(body)}."
    any_columns = [name for name, kind in column_types.items() if kind == "AnyType"]
    if text.startswith(_CSV_FAILURE) and any_columns:
        listed = ", ".join(repr(name) for name in any_columns[:5]) + (" and more" if len(any_columns) > 5 else "")
        return (
            f"The CSV body could not be read: this model's signature declares columns of type any ({listed}), "
            "which MLflow's CSV reader cannot parse. Send the rows as JSON instead."
        )
    for prefix, replacement in _KNOWN_MESSAGES:
        if text.startswith(prefix):
            return _input_fields_found(body) + replacement if replacement == _FORMAT_HELP else replacement
    match = _CONVERSION.search(text)
    if match:
        column = match.group("column")
        if column in column_types:
            expected = column_types[column]
            return f"Column {column!r} expects {expected} values; the request has another kind of value in it."
        return "A column holds a value that cannot be converted to the column's declared type."
    if status >= 500:
        return "The server failed to score the request; its log has the error type."
    return "The request could not be read or scored; check it against the model's signature."
