"""Error messages of the serving layer that depend on the model's signature."""

from __future__ import annotations

from explainable_model.request_errors import clean_message

CSV_FAILURE = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid CSV-formatted Pandas DataFrame "
    "produced using the `pandas.DataFrame.to_csv()` method. Error: 'could not convert string to float: 7x'"
)


def test_csv_failure_names_any_columns():
    column_types = {"Age": "long", "Price": "AnyType", "Time": "AnyType"}

    message = clean_message(400, CSV_FAILURE, column_types, b"", None)

    assert "declares columns of type any ('Price', 'Time')" in message
    assert "Send the rows as JSON instead." in message
    assert "7x" not in message


def test_csv_failure_without_any_columns():
    message = clean_message(400, CSV_FAILURE, {"Age": "long", "Income": "double"}, b"", None)

    assert message.startswith("The CSV body could not be read as a table of the model's columns and types")


FIELDS_FAILURE = "The input must be a JSON dictionary with exactly one of the input fields {'dataframe_split', ...}"


def test_field_message_says_what_was_found():
    none = clean_message(400, FIELDS_FAILURE, {}, b'{"data": [[1, 2]]}', None)
    two = clean_message(400, FIELDS_FAILURE, {}, b'{"inputs": [], "dataframe_records": []}', None)
    listed = clean_message(400, FIELDS_FAILURE, {}, b"[1, 2]", None)

    assert none.startswith("The request has none of the input fields. The request must be a JSON object")
    assert two.startswith("The request has 2 input fields (dataframe_records, inputs). ")
    assert listed.startswith("The body is not a JSON object. ")
