"""RequestSchema: the per-version decoder built from a Signature, and output validation."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InputValidationError, MalformedRequestError, PayloadTooLargeError
from gateway.schema.request_schema import RequestSchema
from registry_sync.package.manifest import ColumnSpec, Signature

NAMES = ("hp", "wt", "cyl")
NUMERIC = Signature(
    inputs=[
        ColumnSpec(name="hp", type="double"),
        ColumnSpec(name="wt", type="float"),
        ColumnSpec(name="cyl", type="long", categories=[4, 6, 8]),
    ],
    outputs=[ColumnSpec(name="mpg", type="double")],
)
MIXED = Signature(
    inputs=[
        ColumnSpec(name="hp", type="double"),
        ColumnSpec(name="brand", type="string"),
        ColumnSpec(name="note", type="string", required=False),
    ],
    outputs=[ColumnSpec(name="label", type="string"), ColumnSpec(name="p", type="double")],
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
rows_strategy = st.lists(
    st.fixed_dictionaries({"hp": finite, "wt": finite, "cyl": st.sampled_from([4, 6, 8])}),
    min_size=1,
    max_size=20,
)


def _encode(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def _error(schema: RequestSchema, body: object) -> InputValidationError:
    with pytest.raises(InputValidationError) as info:
        schema.decode(_encode(body) if not isinstance(body, bytes) else body)
    return info.value


@given(rows_strategy)
def test_every_request_shape_decodes_to_the_same_matrix(rows: list[dict[str, float]]) -> None:
    schema = RequestSchema(NUMERIC)
    expected = np.array([[r[n] for n in NAMES] for r in rows], dtype=np.float64)
    columns = {n: [r[n] for r in rows] for n in NAMES}
    split = {"columns": list(NAMES), "data": [[r[n] for n in NAMES] for r in rows]}
    bodies = [
        {"inputs": rows},
        {"inputs": columns},
        {"dataframe_split": split},
        {"dataframe_records": rows},
        {"instances": rows},
    ]
    hashes = set()
    for body in bodies:
        batch = schema.decode(_encode(body))
        assert batch.rows == len(rows)
        assert batch.matrix is not None
        np.testing.assert_array_equal(batch.matrix, expected)
        hashes.add(batch.canonical_json())
    assert len(hashes) == 1


@given(rows_strategy, st.integers(min_value=0, max_value=19), st.text(max_size=5))
def test_a_string_where_a_number_belongs_names_its_row_and_field(
    rows: list[dict[str, object]], index: int, text: str
) -> None:
    index %= len(rows)
    rows[index] = {**rows[index], "wt": text}
    err = _error(RequestSchema(NUMERIC), {"inputs": rows})
    assert err.path == f"$.inputs[{index}].wt"
    assert err.reason == "expected number, got string"
    assert err.kind == "type"


@pytest.mark.parametrize(
    ("body", "path", "reason", "kind"),
    [
        (
            {"inputs": [{"hp": 1, "wt": 2}]},
            "$.inputs[0].cyl",
            "required field is missing",
            "missing",
        ),
        (
            {"inputs": [{"hp": 1, "wt": 2, "cyl": 4, "x": 1}]},
            "$.inputs[0].x",
            "unknown field",
            "unknown",
        ),
        (
            {"inputs": [{"hp": None, "wt": 2, "cyl": 4}]},
            "$.inputs[0].hp",
            "expected number, got null",
            "missing",
        ),
        (
            {"inputs": [{"hp": 1, "wt": 2, "cyl": 5}]},
            "$.inputs[0].cyl",
            "value is not one of the declared categories",
            "category",
        ),
        (
            {"inputs": [{"hp": 1, "wt": 2, "cyl": 4.5}]},
            "$.inputs[0].cyl",
            "expected an integer, got a fraction",
            "type",
        ),
        (
            {"inputs": {"hp": [1], "wt": [1, 2], "cyl": [4]}},
            "$.inputs.wt",
            "columns have different lengths",
            "shape",
        ),
        (
            {"inputs": {"hp": [1], "wt": [1], "cyl": [7]}},
            "$.inputs.cyl[0]",
            "value is not one of the declared categories",
            "category",
        ),
        ({"inputs": "rows"}, "$.inputs", "expected object or array or null, got string", "type"),
        ({"inputs": []}, "$.inputs", "no rows", "shape"),
        (
            {},
            "$",
            "expected exactly one of inputs, dataframe_split, dataframe_records, instances",
            "shape",
        ),
        (
            {"dataframe_split": {"columns": ["hp", "wt"], "data": [[1, 2, 3]]}},
            "$.dataframe_split.data[0]",
            "expected 2 values, got 3",
            "shape",
        ),
        (
            {"dataframe_split": {"columns": ["hp", "hp"], "data": []}},
            "$.dataframe_split.columns",
            "column names repeat",
            "shape",
        ),
        (
            {"dataframe_split": {"columns": ["cyl", "hp", "wt"], "data": [[4, "a", 1]]}},
            "$.dataframe_split.data[0][1]",
            "expected number, got string",
            "type",
        ),
    ],
)
def test_schema_mismatches_name_the_path(body: object, path: str, reason: str, kind: str) -> None:
    err = _error(RequestSchema(NUMERIC), body)
    assert (err.path, err.reason, err.kind) == (path, reason, kind)


def test_a_number_out_of_double_range_is_rejected_as_non_finite() -> None:
    err = _error(RequestSchema(NUMERIC), b'{"inputs": [{"hp": 1e999, "wt": 1, "cyl": 4}]}')
    assert (err.path, err.kind) == ("$.inputs[0].hp", "non_finite")


def test_null_for_a_required_number_is_nan_only_when_non_finite_values_are_allowed() -> None:
    body = _encode({"inputs": [{"hp": None, "wt": 1, "cyl": 4}]})
    batch = RequestSchema(NUMERIC, allow_non_finite=True).decode(body)
    assert batch.matrix is not None
    assert np.isnan(batch.matrix[0, 0])


def test_malformed_json_is_a_malformed_request() -> None:
    with pytest.raises(MalformedRequestError):
        RequestSchema(NUMERIC).decode(b'{"inputs": [')


def test_more_rows_than_the_limit_is_too_large() -> None:
    rows = [{"hp": 1, "wt": 1, "cyl": 4}] * 6
    with pytest.raises(PayloadTooLargeError):
        RequestSchema(NUMERIC, max_rows=5).decode(_encode({"inputs": rows}))


def test_error_messages_never_contain_the_values_sent() -> None:
    secret = "hunter2-secret"
    for body in (
        {"inputs": [{"hp": secret, "wt": 1, "cyl": 4}]},
        {"inputs": {"hp": [1], "wt": [secret], "cyl": [4]}},
        {"dataframe_split": {"columns": ["hp", "wt", "cyl"], "data": [[1, 1, secret]]}},
        {"inputs": [{"hp": 1, "wt": 1, "cyl": secret}]},
    ):
        err = _error(RequestSchema(NUMERIC), body)
        assert secret not in str(err)
        assert secret not in json.dumps(err.details)


def test_mixed_signatures_decode_to_typed_columns_with_missing_optionals_as_none() -> None:
    schema = RequestSchema(MIXED)
    batch = schema.decode(_encode({"inputs": [{"hp": 1, "brand": "a"}, {"hp": 2, "brand": "b"}]}))
    assert batch.matrix is None
    assert batch.columns is not None
    assert batch.columns["hp"].dtype == np.float64
    assert batch.columns["brand"].tolist() == ["a", "b"]
    assert batch.columns["note"].tolist() == [None, None]


def test_outputs_are_checked_for_count_type_and_finiteness() -> None:
    numeric = RequestSchema(NUMERIC)
    assert numeric.predictions(np.array([[1.5], [2.5]]), 2) == [1.5, 2.5]
    for bad, n in ((np.array([1.0]), 2), (np.array([np.inf, 1.0]), 2), (np.array(["a", "b"]), 2)):
        with pytest.raises(ValueError):
            numeric.predictions(bad, n)
    mixed = RequestSchema(MIXED)
    out = np.array([["yes", 0.9], ["no", 0.2]], dtype=object)
    assert mixed.predictions(out, 2) == [{"label": "yes", "p": 0.9}, {"label": "no", "p": 0.2}]


# -- positional rows: lists of lists under `inputs` or `instances` ----------------------------


def test_lists_of_lists_are_read_in_the_declared_positional_order() -> None:
    reordered = msgspec.structs.replace(
        NUMERIC,
        inputs=[NUMERIC.inputs[2], NUMERIC.inputs[0], NUMERIC.inputs[1]],
        positional_order=["hp", "wt", "cyl"],
    )
    for key in ("inputs", "instances"):
        batch = RequestSchema(reordered).decode(_encode({key: [[110, 2.62, 6], [175, 3.44, 8]]}))
        assert batch.column_map()["hp"].tolist() == [110, 175]
        assert batch.column_map()["cyl"].tolist() == [6, 8]


def test_a_positional_row_of_the_wrong_length_is_refused_naming_the_order() -> None:
    err = _error(RequestSchema(NUMERIC), {"instances": [[110, 2.62, 6], [110, 2.62]]})
    assert (err.path, err.kind) == ("$.instances[1]", "shape")
    assert "(hp, wt, cyl)" in err.reason


def test_a_positional_value_error_names_row_and_position() -> None:
    err = _error(RequestSchema(NUMERIC), {"inputs": [[110, "heavy", 6]]})
    assert (err.path, err.reason) == ("$.inputs[0][1]", "expected number, got string")


def test_positional_rows_may_leave_out_trailing_optional_inputs() -> None:
    batch = RequestSchema(MIXED).decode(_encode({"inputs": [[1.5, "a"], [2.5, "b", "x"]]}))
    assert batch.column_map()["note"].tolist() == [None, "x"]


def test_an_integral_float_is_an_integer_value_in_every_shape() -> None:
    schema = RequestSchema(NUMERIC)
    rows = [{"hp": 110, "wt": 2.62, "cyl": 6.0}]
    split = {"columns": ["hp", "wt", "cyl"], "data": [[110, 2.62, 8.0]], "index": [0]}
    assert schema.decode(_encode({"inputs": rows})).column_map()["cyl"].tolist() == [6]
    assert schema.decode(_encode({"dataframe_split": split})).column_map()["cyl"].tolist() == [8]
    err = _error(schema, {"dataframe_split": {**split, "data": [[110, 2.62, 6.5]]}})
    assert (err.path, err.reason) == (
        "$.dataframe_split.data[0][2]",
        "expected an integer, got a fraction",
    )
    err = _error(schema, {"inputs": {"hp": [1, 2], "wt": [1, 2], "cyl": [4, 7.5]}})
    assert err.path == "$.inputs.cyl[1]"
    err = _error(schema, {"inputs": [{"hp": 110, "wt": 2.62, "cyl": "six"}]})
    assert err.reason == "expected integer, got string"


FLOATS = Signature(
    inputs=[ColumnSpec(name=n, type="double") for n in ("hp", "wt", "disp")],
    outputs=[ColumnSpec(name="mpg", type="double")],
)
float_rows = st.lists(
    st.fixed_dictionaries({n: finite for n in ("hp", "wt", "disp")}), min_size=1, max_size=20
)


@given(float_rows, st.permutations(["hp", "wt", "disp"]))
def test_float_signatures_read_every_shape_and_column_order_to_the_same_matrix(
    rows: list[dict[str, float]], order: list[str]
) -> None:
    # The column-wise paths (rows into one buffer, split cells decoded as floats) against
    # the matrix built value by value.
    schema = RequestSchema(FLOATS)
    expected = np.array([[r[n] for n in ("hp", "wt", "disp")] for r in rows], dtype=np.float64)
    split = {"columns": order, "data": [[r[n] for n in order] for r in rows]}
    for body in ({"inputs": rows}, {"dataframe_split": split}, {"dataframe_records": rows}):
        batch = schema.decode(_encode(body))
        assert batch.matrix is not None and batch.matrix.flags.c_contiguous
        np.testing.assert_array_equal(batch.matrix, expected)


@pytest.mark.parametrize(
    ("split", "path", "kind"),
    [
        ({"columns": ["wt", "hp", "disp"], "data": [[1, 2, 3], [1, "x", 3]]}, "[1][1]", "type"),
        ({"columns": ["wt", "hp", "disp"], "data": [[1, 2, 3], [True, 2, 3]]}, "[1][0]", "type"),
        ({"columns": ["wt", "hp", "disp"], "data": [[1, 2, None]]}, "[0][2]", "missing"),
        ({"columns": ["wt", "hp", "disp"], "data": [[1, 2, 3], [1, 2]]}, "[1]", "shape"),
        ({"columns": ["wt", "hp"], "data": [[1, 2]]}, "", "missing"),
    ],
)
def test_float_split_refusals_name_the_cell_as_sent(split: object, path: str, kind: str) -> None:
    error = _error(RequestSchema(FLOATS), {"dataframe_split": split})
    assert error.path.startswith("$.dataframe_split" + (".data" + path if path else ""))
    assert error.kind == kind
