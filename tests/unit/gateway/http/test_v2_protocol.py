"""Open Inference Protocol (V2) bodies decode into the same validated batch as /predict."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pytest

from gateway.errors import InputValidationError, MalformedRequestError
from gateway.http.v2_protocol import decode_v2, encode_v2_response, v2_metadata
from gateway.schema.request_schema import RequestSchema
from registry_sync.package.manifest import ColumnSpec, Signature

SIGNATURE = Signature(
    inputs=[
        ColumnSpec(name="hp", type="double"),
        ColumnSpec(name="wt", type="double"),
        ColumnSpec(name="cyl", type="long", categories=[4, 6, 8]),
    ],
    outputs=[ColumnSpec(name="prediction", type="double")],
)


@pytest.fixture
def schema() -> RequestSchema:
    return RequestSchema(SIGNATURE)


def _body(*tensors: dict[str, object], **extra: object) -> bytes:
    return json.dumps({"inputs": list(tensors), **extra}).encode()


def test_one_tensor_per_input_decodes_like_the_columns_shape(schema: RequestSchema) -> None:
    request, batch = decode_v2(
        schema,
        _body(
            {"name": "hp", "shape": [2], "datatype": "FP64", "data": [110, 175]},
            {"name": "wt", "shape": [2, 1], "datatype": "FP64", "data": [[2.62], [3.44]]},
            {"name": "cyl", "shape": [2], "datatype": "INT64", "data": [6, 8]},
            id="req-7",
        ),
    )
    columns = schema.decode(b'{"inputs": {"hp": [110, 175], "wt": [2.62, 3.44], "cyl": [6, 8]}}')
    assert request.id == "req-7"
    assert batch.rows == 2
    assert np.array_equal(batch.matrix, columns.matrix)  # type: ignore[arg-type]


def test_a_single_matrix_tensor_is_split_in_signature_order(schema: RequestSchema) -> None:
    _, batch = decode_v2(
        schema,
        _body(
            {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [110, 2.62, 6, 175, 3.44, 8]}
        ),
    )
    assert batch.matrix is not None
    assert batch.matrix.tolist() == [[110, 2.62, 6], [175, 3.44, 8]]


@pytest.mark.parametrize(
    ("tensors", "path", "kind"),
    [
        (
            [
                {"name": "hp", "shape": [2], "datatype": "FP64", "data": [110, "fast"]},
                {"name": "wt", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                {"name": "cyl", "shape": [2], "datatype": "INT64", "data": [6, 8]},
            ],
            "$.inputs[0].data[1]",
            "type",
        ),
        (
            [
                {"name": "hp", "shape": [1], "datatype": "FP64", "data": [110]},
                {"name": "wt", "shape": [1], "datatype": "FP64", "data": [2.6]},
                {"name": "cyl", "shape": [1], "datatype": "INT64", "data": [5]},
            ],
            "$.inputs[2].data[0]",
            "category",
        ),
        (
            [{"name": "horsepower", "shape": [1], "datatype": "FP64", "data": [1]}],
            "$.inputs[0].name",
            "unknown",
        ),
        (
            [{"name": "hp", "shape": [3], "datatype": "FP64", "data": [1, 2]}],
            "$.inputs[0].shape",
            "shape",
        ),
        (
            [
                {"name": "hp", "shape": [1], "datatype": "FP64", "data": [110]},
                {"name": "cyl", "shape": [1], "datatype": "INT64", "data": [6]},
            ],
            "$.wt",
            "missing",
        ),
    ],
)
def test_bad_tensors_name_the_tensor_and_element_without_echoing_values(
    schema: RequestSchema, tensors: list[dict[str, object]], path: str, kind: str
) -> None:
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, _body(*tensors))
    assert caught.value.path == path
    assert caught.value.kind == kind
    assert "fast" not in str(caught.value)


def test_not_json_is_malformed(schema: RequestSchema) -> None:
    with pytest.raises(MalformedRequestError):
        decode_v2(schema, b"{not json")


def test_response_and_metadata_follow_the_protocol(schema: RequestSchema) -> None:
    response = encode_v2_response(
        schema,
        model="cost",
        version="v1.0.0",
        request_id="r1",
        stage="prod",
        digest="sha256:ab",
        predictions=[21.6, 17.5],
    )
    assert response.header_length is None
    body = json.loads(response.body)
    assert body["outputs"] == [
        {"name": "prediction", "shape": [2], "datatype": "FP64", "data": [21.6, 17.5]}
    ]
    assert (body["model_name"], body["model_version"], body["id"]) == ("cost", "v1.0.0", "r1")
    meta = v2_metadata(schema, model="cost", versions=["v1.0.0"], engine="onnx")
    assert [i["datatype"] for i in meta["inputs"]] == ["FP64", "FP64", "INT64"]
    assert meta["parameters"]["positional_order"] == ["hp", "wt", "cyl"]


# -- the positional contract ------------------------------------------------------------------

REORDERED = msgspec.structs.replace(
    SIGNATURE,
    inputs=[SIGNATURE.inputs[2], SIGNATURE.inputs[0], SIGNATURE.inputs[1]],
    positional_order=["hp", "wt", "cyl"],
)


def test_a_matrix_tensor_is_read_in_the_declared_positional_order_not_the_inputs_order() -> None:
    # This version lists its inputs cyl, hp, wt; its positional contract says hp, wt, cyl.
    schema = RequestSchema(REORDERED)
    _, batch = decode_v2(
        schema, _body({"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [110, 2.62, 6]})
    )
    assert batch.column_map()["hp"].tolist() == [110]
    assert batch.column_map()["cyl"].tolist() == [6]
    meta = v2_metadata(schema, model="m", versions=["v2"], engine="onnx")
    assert meta["parameters"]["positional_order"] == ["hp", "wt", "cyl"]


def test_a_matrix_of_the_wrong_width_is_refused_and_the_message_names_the_order(
    schema: RequestSchema,
) -> None:
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, _body({"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}))
    assert caught.value.path == "$.inputs[0].shape"
    assert "hp, wt, cyl" in caught.value.reason


def test_a_tensor_named_like_no_input_is_refused_not_guessed(schema: RequestSchema) -> None:
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, _body({"name": "x", "shape": [3], "datatype": "FP64", "data": [1, 2, 6]}))
    assert (caught.value.path, caught.value.kind) == ("$.inputs[0].name", "unknown")


def test_a_positional_error_names_the_element_the_client_sent(schema: RequestSchema) -> None:
    tensor = {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 6, 1, 2, 7]}
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, _body(tensor))
    # cyl of row 1 is element 1 * 3 + 2 of the flat data.
    assert (caught.value.path, caught.value.kind) == ("$.inputs[0].data[5]", "category")


# -- datatypes, outputs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "data", "reason"),
    [
        ("BANANA", [1.0], "not a datatype of the protocol"),
        ("BYTES", ["1.0"], "BYTES does not fit a double input: expected a numeric datatype"),
        ("BOOL", [True], "BOOL does not fit a double input: expected a numeric datatype"),
    ],
)
def test_a_datatype_that_does_not_fit_the_input_is_refused(
    schema: RequestSchema, datatype: str, data: list[object], reason: str
) -> None:
    tensors = [
        {"name": "hp", "shape": [1], "datatype": datatype, "data": data},
        {"name": "wt", "shape": [1], "datatype": "FP64", "data": [2.6]},
        {"name": "cyl", "shape": [1], "datatype": "INT64", "data": [6]},
    ]
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, _body(*tensors))
    assert (caught.value.path, caught.value.reason) == ("$.inputs[0].datatype", reason)


def test_integral_floats_feed_a_long_input_and_fractions_do_not(schema: RequestSchema) -> None:
    tensor = {"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [110.0, 2.62, 6.0]}
    _, batch = decode_v2(schema, _body(tensor))
    assert batch.column_map()["cyl"].tolist() == [6]
    tensor["data"] = [110.0, 2.62, 6.5]
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, _body(tensor))
    assert caught.value.path == "$.inputs[0].data[2]"


def test_an_unknown_requested_output_is_refused(schema: RequestSchema) -> None:
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, _body(*_three(), outputs=[{"name": "mpgg"}]))
    assert (caught.value.path, caught.value.kind) == ("$.outputs[0].name", "unknown")
    assert "prediction" in caught.value.reason


def _three() -> list[dict[str, object]]:
    return [
        {"name": "hp", "shape": [2], "datatype": "FP64", "data": [110, 175]},
        {"name": "wt", "shape": [2], "datatype": "FP64", "data": [2.62, 3.44]},
        {"name": "cyl", "shape": [2], "datatype": "INT64", "data": [6, 8]},
    ]


# -- the binary tensor extension ---------------------------------------------------------------


def _binary_body(arrays: dict[str, tuple[str, np.ndarray]], **extra: object) -> tuple[bytes, bytes]:
    tensors, chunks = [], []
    for name, (datatype, array) in arrays.items():
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        chunks.append(raw)
        tensors.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
    header = json.dumps({"inputs": tensors, **extra}).encode()
    return header + b"".join(chunks), str(len(header)).encode()


NUMERIC_DTYPES = {
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


@pytest.mark.parametrize("datatype", sorted(NUMERIC_DTYPES))
def test_binary_tensors_of_every_numeric_datatype_decode_like_json(
    schema: RequestSchema, datatype: str
) -> None:
    dtype = NUMERIC_DTYPES[datatype]
    body, length = _binary_body(
        {
            "hp": (datatype, np.array([110, 100], dtype=dtype)),
            "wt": (datatype, np.array([3, 2], dtype=dtype)),
            "cyl": (datatype, np.array([6, 8], dtype=dtype)),
        }
    )
    _, batch = decode_v2(schema, body, length)
    assert batch.matrix is not None
    assert batch.matrix.tolist() == [[110, 3, 6], [100, 2, 8]]


def test_bf16_binary_tensors_decode_to_their_float_values(schema: RequestSchema) -> None:
    def bf16(values: list[float]) -> np.ndarray:
        return (np.array(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)

    body, length = _binary_body(
        {
            "hp": ("BF16", bf16([110.0, 96.0])),
            "wt": ("BF16", bf16([2.5, 3.0])),
            "cyl": ("BF16", bf16([6.0, 8.0])),
        }
    )
    _, batch = decode_v2(schema, body, length)
    assert batch.matrix is not None
    assert batch.matrix.tolist() == [[110, 2.5, 6], [96, 3, 8]]


def test_a_binary_nan_is_refused_like_json_cannot_carry_one(schema: RequestSchema) -> None:
    body, length = _binary_body(
        {
            "hp": ("FP64", np.array([110.0, np.nan])),
            "wt": ("FP64", np.array([2.5, 3.0])),
            "cyl": ("INT64", np.array([6, 8])),
        }
    )
    with pytest.raises(InputValidationError) as caught:
        decode_v2(schema, body, length)
    assert (caught.value.path, caught.value.kind) == ("$.inputs[0].data[1]", "non_finite")


def test_binary_sizes_that_do_not_fit_the_body_or_shape_are_refused(schema: RequestSchema) -> None:
    body, length = _binary_body(
        {
            "hp": ("FP64", np.array([110.0, 96.0])),
            "wt": ("FP64", np.array([2.5, 3.0])),
            "cyl": ("INT64", np.array([6, 8])),
        }
    )
    with pytest.raises(InputValidationError, match="binary_data_size"):
        decode_v2(schema, body[:-1], length)
    with pytest.raises(InputValidationError, match="no tensor's binary_data_size covers"):
        decode_v2(schema, body + b"\0", length)
    with pytest.raises(MalformedRequestError):
        decode_v2(schema, body, b"999999")


def test_bytes_tensors_carry_strings_in_binary() -> None:
    schema = RequestSchema(
        Signature(
            inputs=[ColumnSpec(name="city", type="string"), ColumnSpec(name="n", type="long")],
            outputs=[ColumnSpec(name="label", type="string")],
        )
    )
    raw = b"".join(len(s).to_bytes(4, "little") + s for s in (b"Oslo", "Zürich".encode()))
    ints = np.array([1, 2], dtype="<i8").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "city",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                },
                {
                    "name": "n",
                    "shape": [2],
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": len(ints)},
                },
            ]
        }
    ).encode()
    _, batch = decode_v2(schema, header + raw + ints, str(len(header)).encode())
    assert batch.column_map()["city"].tolist() == ["Oslo", "Zürich"]


def test_outputs_come_back_in_binary_when_asked_and_only_those_named(schema: RequestSchema) -> None:
    request, _ = decode_v2(
        schema,
        _body(*_three(), outputs=[{"name": "prediction", "parameters": {"binary_data": True}}]),
    )
    response = encode_v2_response(
        schema,
        model="cost",
        version="v1",
        request_id="r",
        stage="prod",
        digest="d",
        predictions=[21.5, 17.25],
        request=request,
    )
    assert response.header_length is not None
    header = json.loads(response.body[: response.header_length])
    [output] = header["outputs"]
    assert output["parameters"] == {"binary_data_size": 16}
    assert "data" not in output
    raw = response.body[response.header_length :]
    assert np.frombuffer(raw, dtype="<f8").tolist() == [21.5, 17.25]
