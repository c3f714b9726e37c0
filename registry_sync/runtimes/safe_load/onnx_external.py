"""ONNX external data: tensors an ONNX file keeps in other files, named by a path inside it.

onnxruntime reads those paths when it builds a session, relative to the model file (or the
working directory, for a model given as bytes), so a path such as `../../secrets` or
`/etc/shadow` would read a file outside the package into the model's weights. Every external
path must be relative, stay inside the package, and be a file the manifest lists (so its sha256
was verified like the model's own). Those files are then read through the same digest check
and inlined, so onnxruntime gets one self-contained model and opens no path itself.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from pathlib import PurePosixPath
from typing import Any

from registry_sync.runtimes.safe_load.policy import RefusedError

__all__ = ["inline_external_data"]


def inline_external_data(
    model_bytes: bytes, listed: Collection[str], read: Callable[[str], bytes]
) -> bytes:
    """The model with its external data inlined (the same bytes when it has none);
    RefusedError for a path that is absolute, climbs out, or is not in the manifest.
    `read(path)` returns a listed file's bytes, verified against its sha256."""
    import onnx

    model = onnx.ModelProto()
    model.ParseFromString(model_bytes)
    tensors = [*_tensors(model.graph.initializer, model.graph.sparse_initializer, model.graph.node)]
    for function in model.functions:
        tensors.extend(_tensors((), (), function.node))
    external = [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    if not external:
        return model_bytes
    files: dict[str, bytes] = {}
    for tensor in external:
        entries = {e.key: e.value for e in tensor.external_data}
        path = _checked_path(tensor.name, entries.get("location", ""), listed)
        data = files.get(path)
        if data is None:
            data = files[path] = read(path)
        offset = int(entries.get("offset", "0") or 0)
        length = int(entries.get("length", "0") or 0) or len(data) - offset
        if offset < 0 or offset + length > len(data):
            raise RefusedError(f"external data of tensor {tensor.name!r}", "is out of range")
        tensor.raw_data = data[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return bytes(model.SerializeToString())


def _checked_path(tensor: str, location: str, listed: Collection[str]) -> str:
    path = PurePosixPath(location.replace("\\", "/"))
    subject = f"external data {location!r} of tensor {tensor!r}"
    if not location or path.is_absolute() or ".." in path.parts or ":" in location:
        raise RefusedError(subject, "must be a relative path inside the package")
    if str(path) not in listed:
        raise RefusedError(subject, "is not a file listed (with its sha256) in model.yaml")
    return str(path)


def _tensors(initializers: Any, sparse: Any, nodes: Any) -> Iterator[Any]:
    """Initializers, constants and the tensors of every subgraph (If/Loop/Scan bodies)."""
    yield from initializers
    yield from (s.values for s in sparse)
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            graphs = [*attribute.graphs, *([attribute.g] if attribute.HasField("g") else [])]
            for graph in graphs:
                yield from _tensors(graph.initializer, graph.sparse_initializer, graph.node)
