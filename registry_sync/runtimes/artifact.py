"""Read an artifact's bytes once and prove they are the bytes the manifest names."""

from __future__ import annotations

from typing import Any

from registry_sync.errors import DigestMismatchError, MissingFileError, PackageError
from registry_sync.package.read import ModelPackage, sha256_bytes

__all__ = ["read_verified", "unpickle_verified"]


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


def unpickle_verified(package: ModelPackage, relative: str) -> Any:
    """Unpickle a file only after its sha256 matches the manifest, from those same bytes."""
    import pickle

    data = read_verified(package, relative)
    try:
        # Deliberately called a few frames deep: statsmodels' unpickling of formula models looks
        # up the call stack for an evaluation environment and fails at a shallow top level.
        return pickle.loads(data)
    except Exception as exc:  # a verified but unloadable pickle: library version skew, usually
        raise PackageError(
            str(package.path), f"cannot unpickle {relative!r}: {type(exc).__name__}: {exc}"
        ) from exc
