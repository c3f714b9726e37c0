from __future__ import annotations

import json
from typing import Any

import pytest

from registry_sync.errors import ManifestError, UnsupportedFlavorError
from registry_sync.mlflow.mlmodel import example_rows, pick_flavor, read_signature
from registry_sync.package.manifest import ColumnSpec


def _signature(inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"signature": {"inputs": json.dumps(inputs), "outputs": json.dumps(outputs)}}


def test_column_specs_keep_names_types_and_optional_and_an_unnamed_output_is_prediction() -> None:
    signature = read_signature(
        _signature(
            [
                {"type": "double", "name": "hp", "required": True},
                {"type": "long", "name": "cyl", "required": False},
            ],
            [{"type": "double", "required": True}],
        ),
        "m",
    )
    assert signature.inputs == [
        ColumnSpec(name="hp", type="double"),
        ColumnSpec(name="cyl", type="long", required=False),
    ]
    assert signature.outputs == [ColumnSpec(name="prediction", type="double")]


def test_tensor_specs_become_columns() -> None:
    signature = read_signature(
        _signature(
            [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}],
            [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}],
        ),
        "m",
    )
    assert [(c.name, c.type) for c in signature.inputs] == [
        ("input_0", "float"),
        ("input_1", "float"),
        ("input_2", "float"),
    ]
    assert [c.name for c in signature.outputs] == ["prediction_0", "prediction_1"]


@pytest.mark.parametrize(
    "inputs",
    [
        [{"type": "binary", "name": "image"}],
        [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]}}],
        [{"type": "double"}],
    ],
)
def test_a_signature_it_cannot_serve_is_a_manifest_error(inputs: list[dict[str, Any]]) -> None:
    with pytest.raises(ManifestError):
        read_signature(_signature(inputs, [{"type": "double"}]), "m")


def test_no_signature_is_refused_with_how_to_log_one() -> None:
    with pytest.raises(ManifestError, match="signature="):
        read_signature({}, "m")


def test_flavors_sklearn_skops_and_pickle_statsmodels_onnx_and_unsupported() -> None:
    skops = {
        "flavors": {"sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"}}
    }
    assert pick_flavor(skops, "m").model_file == "model.skops"
    assert (
        pick_flavor({"flavors": {"sklearn": {"pickled_model": "model.pkl"}}}, "m").format
        == "sklearn"
    )
    assert (
        pick_flavor({"flavors": {"statsmodels": {"data": "model.statsmodels"}}}, "m").format
        == "statsmodels"
    )
    assert pick_flavor({"flavors": {"onnx": {"data": "model.onnx"}}}, "m").format == "onnx"
    with pytest.raises(UnsupportedFlavorError, match="python_function, transformers"):
        pick_flavor({"flavors": {"python_function": {}, "transformers": {}}}, "m")
    with pytest.raises(ManifestError, match="names the model file"):
        pick_flavor({"flavors": {"onnx": {"data": "../../etc/passwd"}}}, "m")


def test_input_examples_in_split_records_and_tensor_shapes() -> None:
    inputs = [ColumnSpec(name="a", type="double"), ColumnSpec(name="b", type="double")]
    assert example_rows({"columns": ["a", "b"], "data": [[1, 2]]}, inputs) == [{"a": 1, "b": 2}]
    assert example_rows([{"a": 1, "b": 2}], inputs) == [{"a": 1, "b": 2}]
    assert example_rows({"inputs": [[1, 2]]}, inputs) == [{"a": 1, "b": 2}]
