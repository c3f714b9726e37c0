"""Write a model package folder atomically: artifacts plus model.yaml, renamed into place."""

from __future__ import annotations

import importlib
import math
import platform
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from registry_sync.errors import ManifestError, PackageError
from registry_sync.package.manifest import FileEntry, Manifest, ModelCard, Signature
from registry_sync.package.read import (
    MANIFEST_FILE,
    ModelPackage,
    check_example,
    read_package,
    sha256_bytes,
    write_manifest,
)
from registry_sync.package.signature import to_python

__all__ = ["EXAMPLE_ROWS", "Card", "library_versions", "manifest_fields", "write_package"]

EXAMPLE_ROWS = 5

Card = ModelCard | Mapping[str, str] | None


def manifest_fields(
    name: str,
    fmt: str,
    signature: Signature,
    example: pd.DataFrame,
    *,
    metrics: Mapping[str, float] | None,
    card: Card,
    labels: Sequence[str] | None,
    libraries: dict[str, str],
) -> dict[str, Any]:
    """Every Manifest field but the files: example rows as JSON-safe scalars, sorted lists."""
    if card is not None and not isinstance(card, ModelCard):
        card = ModelCard(**card)
    if signature.positional_order is None:
        # Written out, so the package states its positional contract (see Signature).
        order = [spec.name for spec in signature.inputs]
        signature = msgspec.structs.replace(signature, positional_order=order)
    columns = [spec.name for spec in signature.inputs if spec.name in example.columns]
    rows = [
        {column: _json_scalar(value) for column, value in row.items()}
        for row in example[columns].head(EXAMPLE_ROWS).to_dict(orient="records")
    ]
    return {
        "name": name,
        "format": fmt,
        "signature": signature,
        "input_example": rows,
        "metrics": {key: float(value) for key, value in sorted((metrics or {}).items())},
        "card": card or ModelCard(),
        "labels": sorted(labels or []),
        "libraries": libraries,
    }


def _json_scalar(value: Any) -> Any:
    value = to_python(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def library_versions(*frameworks: str) -> dict[str, str]:
    """python, numpy and pandas versions plus each framework's, e.g. "sklearn": "1.5.2"."""
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    versions["pandas"] = pd.__version__
    for framework in frameworks:
        module = importlib.import_module(framework)
        versions[framework] = str(module.__version__)
    return versions


def write_package(
    path: Path | str, fields: Mapping[str, Any], files: Mapping[str, bytes]
) -> ModelPackage:
    """Write into a temporary folder beside `path`, then rename it into place; a package
    already at `path` is replaced, any other non-empty folder is refused."""
    target = Path(path)
    _check_replaceable(target)
    entries = [
        FileEntry(path=rel, sha256=sha256_bytes(data), size_bytes=len(data))
        for rel, data in files.items()
    ]
    manifest = Manifest(files=entries, **fields)
    try:
        check_example(manifest.input_example, manifest.signature.inputs)
    except ValueError as exc:
        raise ManifestError(str(target), f"the example does not fit the signature: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for rel, data in files.items():
            (staging / rel).write_bytes(data)
        write_manifest(manifest, staging)
        if target.exists():
            # A folder cannot be renamed over a non-empty one: move the old package aside first.
            retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return read_package(target)


def _check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise PackageError(str(target), "exists and is not a folder; refusing to replace it")
    if any(target.iterdir()) and not (target / MANIFEST_FILE).is_file():
        raise PackageError(str(target), "is a non-empty folder without model.yaml; not replacing")
