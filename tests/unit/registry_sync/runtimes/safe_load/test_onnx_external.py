"""ONNX external data must be a file of the package; it is inlined, never opened by path."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import onnx
import pytest

from registry_sync.errors import UnsafeArtifactError
from registry_sync.package.manifest import FileEntry
from registry_sync.package.read import read_package, sha256_bytes, write_manifest
from registry_sync.package.save import save_onnx
from registry_sync.runtimes import load_predictor
from tests.models import example_rows, train_sklearn_linear


def save_onnx_package(folder: Path) -> Path:
    """A linear model as MatMul + Add with its weights in initializers (tensors that can live
    in an external file; skl2onnx's LinearRegressor keeps them in node attributes)."""
    from onnx import TensorProto, helper, numpy_helper

    model, features = train_sklearn_linear()
    weights = numpy_helper.from_array(model.coef_.reshape(-1, 1).astype(np.float64), "w")
    bias = numpy_helper.from_array(np.array([model.intercept_], dtype=np.float64), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, features.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, 1])],
        initializer=[weights, bias],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return save_onnx(proto, folder, example=features, name="linear").path


def _externalize(package: Path, location: str, *, list_it: bool = True) -> Path:
    """Move the model's weights out of model.onnx into `location` (relative to the package)."""
    model = onnx.load(str(package / "model.onnx"))
    onnx.save_model(
        model,
        str(package / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    reloaded = onnx.load(str(package / "model.onnx"), load_external_data=False)
    for tensor in reloaded.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    data = reloaded.SerializeToString()
    (package / "model.onnx").write_bytes(data)
    manifest = read_package(package, verify_digests=False).manifest
    files = [FileEntry(path="model.onnx", sha256=sha256_bytes(data), size_bytes=len(data))]
    weights = (package / "weights.bin").read_bytes()
    if list_it:
        files.append(
            FileEntry(path="weights.bin", sha256=sha256_bytes(weights), size_bytes=len(weights))
        )
    write_manifest(msgspec.structs.replace(manifest, files=files), package)
    return package


def test_external_data_inside_the_package_is_verified_and_inlined(tmp_path: Path) -> None:
    plain = load_predictor(read_package(save_onnx_package(tmp_path / "plain")))
    package = _externalize(save_onnx_package(tmp_path / "ext"), "weights.bin")
    rows = example_rows(3)
    predictor = load_predictor(read_package(package))
    matrix = np.array([[r[n] for n in predictor.input_names] for r in rows])
    # The same weights, moved and read back: bit-identical.
    np.testing.assert_array_equal(predictor.predict_matrix(matrix), plain.predict_matrix(matrix))


@pytest.mark.parametrize("location", ["../weights.bin", "/etc/passwd", "sub/../../weights.bin"])
def test_external_data_outside_the_package_is_refused(tmp_path: Path, location: str) -> None:
    package = _externalize(save_onnx_package(tmp_path / "ext"), location)
    with pytest.raises(UnsafeArtifactError, match="relative path inside the package"):
        load_predictor(read_package(package))


def test_external_data_not_listed_in_the_manifest_is_refused(tmp_path: Path) -> None:
    package = _externalize(save_onnx_package(tmp_path / "ext"), "weights.bin", list_it=False)
    with pytest.raises(UnsafeArtifactError, match="not a file listed"):
        load_predictor(read_package(package))
