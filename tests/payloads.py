"""Model files that try to run code when they are loaded, packaged with correct digests.

Each payload makes a folder (`marker`) when it runs: a test proves a payload works by loading
it with plain `pickle.loads`, then proves stageserve never runs it (the marker never appears).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import msgspec

from registry_sync.package.manifest import FileEntry
from registry_sync.package.read import read_package, sha256_bytes, write_manifest

__all__ = ["EvalPayload", "SystemPayload", "payload_package"]


class EvalPayload:
    """Unpickling calls builtins.eval on Python source that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (eval, (f"__import__('os').mkdir({str(self.marker)!r})",))


class SystemPayload:
    """Unpickling calls os.system (pickled as posix.system) with a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"mkdir '{self.marker}'",))


def payload_package(good: Path, target: Path, payload: bytes, artifact: str = "model.pkl") -> Path:
    """A copy of the good package `good` whose model file is `payload`, its sha256 and size
    recorded in model.yaml: a package that passes every digest check."""
    package = read_package(good)
    target.mkdir(parents=True)
    (target / artifact).write_bytes(payload)
    entry = FileEntry(path=artifact, sha256=sha256_bytes(payload), size_bytes=len(payload))
    manifest = msgspec.structs.replace(
        package.manifest, files=[entry], onnx_export=None, format=package.manifest.format
    )
    write_manifest(manifest, target)
    read_package(target)  # the digests check out
    return target


def pickled(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=5)
