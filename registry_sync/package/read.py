"""Model packages on disk: read and validate a folder with `model.yaml`, digest it, write it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import yaml

from registry_sync.errors import (
    DigestMismatchError,
    ManifestError,
    MissingFileError,
    SizeMismatchError,
)
from registry_sync.package.manifest import COLUMN_TYPES, ColumnSpec, Manifest

__all__ = [
    "MANIFEST_FILE",
    "ModelPackage",
    "check_example",
    "encode_manifest",
    "package_digest",
    "read_package",
    "sha256_bytes",
    "sha256_file",
    "write_manifest",
]

MANIFEST_FILE = "model.yaml"
_CHUNK_BYTES = 1 << 20
_FORMATS = "onnx, sklearn, statsmodels"
_MSGSPEC_PATH = re.compile(r"^(?P<msg>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ModelPackage:
    """A validated package on disk; `digest` is "sha256:" + the hex sha256 of model.yaml."""

    path: Path
    manifest: Manifest
    digest: str

    def file_path(self, relative: str) -> Path:
        """The absolute path of an artifact file named in the manifest."""
        return self.path / relative

    def expected_sha256(self, relative: str) -> str:
        """The sha256 the manifest records for `relative`; a file it does not list is an error."""
        for entry in self.manifest.files:
            if entry.path == relative:
                return entry.sha256
        raise ManifestError(str(self.path), f"file {relative!r} is not listed in {MANIFEST_FILE}")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str, on_bytes: Callable[[int], None] | None = None) -> str:
    """The hex sha256 of a file, read in chunks so a large artifact never sits in memory;
    `on_bytes(n)` after each chunk (progress)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def package_digest(path: Path | str) -> str:
    """The package digest: "sha256:" + the sha256 of the exact model.yaml bytes."""
    return "sha256:" + sha256_file(Path(path) / MANIFEST_FILE)


def encode_manifest(manifest: Manifest) -> bytes:
    """Deterministic, human-readable YAML: fields in a fixed order, mappings sorted by key,
    column defaults and empty optional fields left out (they decode back to the same Manifest)."""
    data: dict[str, Any] = msgspec.to_builtins(manifest)
    # schema_version first so a reader sees what they are looking at; dicts whose order carries
    # no meaning are sorted so the same model saved twice gives the same bytes.
    ordered = {"schema_version": data.pop("schema_version")} | data
    for key in ("metrics", "libraries"):
        ordered[key] = dict(sorted(ordered[key].items()))
    for key in ("formula", "onnx_export", "source"):
        if ordered[key] is None:
            del ordered[key]
    if ordered["signature"]["positional_order"] is None:
        del ordered["signature"]["positional_order"]
    for entry in ordered["files"]:
        if entry.get("uri") is None:
            entry.pop("uri", None)
    for column in ordered["signature"]["inputs"] + ordered["signature"]["outputs"]:
        for key, default in _COLUMN_DEFAULTS.items():
            if column.get(key) == default:
                del column[key]
    text = yaml.dump(
        ordered,
        Dumper=_ManifestDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return text.encode("utf-8")


_COLUMN_DEFAULTS: dict[str, Any] = {"required": True, "categories": None, "description": ""}


class _ManifestDumper(yaml.SafeDumper):
    """A SafeDumper that writes lists of plain scalars on one line: `categories: [4, 6, 8]`."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(item, str | int | float | bool) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow or None)


_ManifestDumper.add_representer(list, _represent_list)


def write_manifest(manifest: Manifest, folder: Path | str) -> Path:
    """Write `folder/model.yaml` and return its path."""
    target = Path(folder) / MANIFEST_FILE
    target.write_bytes(encode_manifest(manifest))
    return target


def read_package(
    path: Path | str,
    *,
    verify_digests: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    remote_ok: bool = False,
) -> ModelPackage:
    """Read and validate a package folder; every problem raises a PackageError naming it.
    `on_bytes(n)` is called as artifact bytes are hashed (progress of a large package).
    `remote_ok`: files that live outside the registry (a `uri`, or every file of a linked
    package) may be absent; those present are still checked (what `register` needs)."""
    folder = Path(path)
    where = str(folder)
    if not folder.is_dir():
        raise ManifestError(where, "not a folder (a model package is a folder with model.yaml)")
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ManifestError(where, f"no {MANIFEST_FILE} in the package folder")
    raw = manifest_path.read_bytes()
    manifest = _decode(raw, where)
    _check_files(
        manifest, folder, verify_digests=verify_digests, on_bytes=on_bytes, remote_ok=remote_ok
    )
    problem = manifest.signature.positional_problem()
    if problem is not None:
        raise ManifestError(where, f"{MANIFEST_FILE}: $.signature.positional_order: {problem}")
    try:
        check_example(manifest.input_example, manifest.signature.inputs)
    except ValueError as exc:
        raise ManifestError(where, f"{MANIFEST_FILE}: input_example: {exc}") from None
    return ModelPackage(path=folder, manifest=manifest, digest="sha256:" + sha256_bytes(raw))


def _decode(raw: bytes, where: str) -> Manifest:
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ManifestError(where, f"{MANIFEST_FILE} is not valid YAML: {exc}") from None
    try:
        return msgspec.convert(data, type=Manifest)
    except msgspec.ValidationError as exc:
        # msgspec says "Expected `str`, got `int` - at `$.signature.inputs[0].type`";
        # put the path first, where a reader of the YAML looks for it.
        text = str(exc)
        match = _MSGSPEC_PATH.match(text)
        if match:
            msg, where_in = match["msg"], match["path"]
            text = f"{where_in}: {msg[:1].lower()}{msg[1:]}"
            if msg.startswith("Invalid enum value"):
                # msgspec does not list a Literal's values; name them for the two enums we have.
                allowed = _FORMATS if where_in == "$.format" else ", ".join(COLUMN_TYPES)
                text = f"{where_in}: expected one of {allowed}; {msg[:1].lower()}{msg[1:]}"
        raise ManifestError(where, f"{MANIFEST_FILE}: {text}") from None


def _check_relative(relative: str, where: str) -> None:
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or "\\" in relative or ".." in pure.parts:
        raise ManifestError(where, f"file path {relative!r} escapes the package folder")


def _check_files(
    manifest: Manifest,
    folder: Path,
    *,
    verify_digests: bool,
    on_bytes: Callable[[int], None] | None = None,
    remote_ok: bool = False,
) -> None:
    where = str(folder)
    listed: set[str] = set()
    for entry in manifest.files:
        _check_relative(entry.path, where)
        if entry.path == MANIFEST_FILE or entry.path in listed:
            raise ManifestError(where, f"file {entry.path!r} is listed twice or is model.yaml")
        listed.add(entry.path)
        file = folder / entry.path
        remote = entry.uri is not None or manifest.source is not None
        if not file.is_file() and remote and remote_ok:
            continue
        if not file.is_file():
            raise MissingFileError(where, entry.path)
        # A symlink (git can store one) must not lead out of the package either.
        if not file.resolve().is_relative_to(folder.resolve()):
            raise ManifestError(where, f"file path {entry.path!r} escapes the package folder")
        if not verify_digests:
            continue
        size = file.stat().st_size
        if size != entry.size_bytes:
            raise SizeMismatchError(where, entry.path, entry.size_bytes, size)
        actual = sha256_file(file, on_bytes)
        if actual != entry.sha256:
            raise DigestMismatchError(where, entry.path, entry.sha256, actual)
    if not manifest.files:
        raise ManifestError(where, f"{MANIFEST_FILE} lists no files")
    export = manifest.onnx_export
    if export is not None and export.path not in listed:
        raise ManifestError(where, f"onnx_export path {export.path!r} is not in files")


def check_example(rows: list[dict[str, Any]], inputs: list[ColumnSpec]) -> None:
    """Raise ValueError naming the row and input when an example row does not fit the inputs."""
    specs = {spec.name: spec for spec in inputs}
    for index, row in enumerate(rows):
        unknown = sorted(set(row) - set(specs))
        if unknown:
            raise ValueError(f"row {index} has inputs not in the signature: {', '.join(unknown)}")
        for spec in inputs:
            if spec.name not in row:
                if spec.required:
                    raise ValueError(f"row {index} lacks required input {spec.name!r}")
                continue
            value = row[spec.name]
            if value is None and not spec.required:
                continue
            if not _fits(value, spec.type):
                raise ValueError(f"row {index}: {spec.name}={value!r} is not a {spec.type}")
            if spec.categories is not None and value not in spec.categories:
                raise ValueError(
                    f"row {index}: {spec.name}={value!r} is not one of {spec.categories}"
                )


def _fits(value: object, column_type: str) -> bool:
    if column_type == "boolean":
        return isinstance(value, bool)
    if column_type == "string":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    # An integral example value fits a double input (JSON does not tell 2 from 2.0).
    return isinstance(value, int) or column_type not in ("long", "integer")
