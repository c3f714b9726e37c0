"""Read an artifact's bytes once, prove they are the bytes the manifest names, and load them
under the allowlist (safe_load/): pickles, skops files and ONNX models alike."""

from __future__ import annotations

from typing import Any

from registry_sync.errors import (
    DigestMismatchError,
    MissingFileError,
    PackageError,
    UnsafeArtifactError,
)
from registry_sync.package.read import ModelPackage, sha256_bytes
from registry_sync.runtimes.safe_load.policy import LoadPolicy, RefusedError

__all__ = ["load_model_object", "read_onnx_verified", "read_verified"]


def read_verified(package: ModelPackage, relative: str) -> bytes:
    """The file's bytes, hashed now: the file may have changed since read_package checked it."""
    expected = package.expected_sha256(relative)
    try:
        data = package.file_path(relative).read_bytes()
    except FileNotFoundError:
        raise MissingFileError(str(package.path), relative) from None
    actual = sha256_bytes(data)
    if actual != expected:
        raise DigestMismatchError(str(package.path), relative, expected, actual)
    return data


def read_onnx_verified(package: ModelPackage, relative: str) -> bytes:
    """An ONNX model's bytes with any external data checked to lie inside the package, read
    through the same digest check and inlined (onnxruntime then opens no path itself)."""
    from registry_sync.runtimes.safe_load.onnx_external import inline_external_data

    data = read_verified(package, relative)
    listed = {entry.path for entry in package.manifest.files}
    try:
        return inline_external_data(data, listed, lambda path: read_verified(package, path))
    except RefusedError as exc:
        raise UnsafeArtifactError(str(package.path), relative, exc.subject, exc.reason) from None


def load_model_object(package: ModelPackage, relative: str, policy: LoadPolicy) -> Any:
    """Deserialize a skops file or a pickle, only after its sha256 matches the manifest and
    only from those same bytes, naming nothing the allowlist refuses."""
    from registry_sync.runtimes.safe_load.skops_file import SKOPS_SUFFIX, loads_skops
    from registry_sync.runtimes.safe_load.unpickler import restricted_loads

    data = read_verified(package, relative)
    try:
        if relative.endswith(SKOPS_SUFFIX):
            return loads_skops(data, policy)
        # Deliberately called a few frames deep: statsmodels' unpickling of formula models
        # looks up the call stack for an evaluation environment and fails at a shallow level.
        return restricted_loads(data, policy)
    except RefusedError as exc:
        raise UnsafeArtifactError(str(package.path), relative, exc.subject, exc.reason) from None
    except Exception as exc:  # a verified but unloadable file: library version skew, usually
        raise PackageError(
            str(package.path), f"cannot load {relative!r}: {type(exc).__name__}: {exc}"
        ) from exc
