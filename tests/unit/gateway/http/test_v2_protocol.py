"""Open Inference Protocol (V2) bodies decode into the same validated batch as /predict."""

from __future__ import annotations

import json

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
    assert response["outputs"] == [
        {"name": "prediction", "shape": [2], "datatype": "FP64", "data": [21.6, 17.5]}
    ]
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "cost",
        "v1.0.0",
        "r1",
    )
    meta = v2_metadata(schema, model="cost", versions=["v1.0.0"], engine="onnx")
    assert [i["datatype"] for i in meta["inputs"]] == ["FP64", "FP64", "INT64"]
