"""The `model.yaml` manifest of a model package: what the model is and how to call it.

These Structs are the contract between a package on disk, the registry, and the gateway
(which builds its request decoder from `Signature`). Unknown fields fail loudly.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "COLUMN_TYPES",
    "ColumnSpec",
    "FileEntry",
    "LinkedSource",
    "Manifest",
    "ModelCard",
    "OnnxExport",
    "Signature",
]

MANIFEST_SCHEMA_VERSION = 1

# The column types of a signature; the names are MLflow's ColSpec types, so MLflow signatures
# map onto ours one to one.
ColumnType = Literal["double", "float", "long", "integer", "boolean", "string"]
COLUMN_TYPES: tuple[str, ...] = ("double", "float", "long", "integer", "boolean", "string")

ModelFormat = Literal["onnx", "sklearn", "statsmodels"]


class ColumnSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One named, typed input or output column."""

    name: str
    type: ColumnType
    required: bool = True
    # Allowed values for a categorical column (e.g. cyl in {4, 6, 8}); None means any value.
    categories: list[Any] | None = None
    description: str = ""


class Signature(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    inputs: list[ColumnSpec]
    outputs: list[ColumnSpec]
    # The column order of positional inputs (a V2 [rows, k] tensor, a list of lists under
    # `inputs` or `instances`): part of the model's contract, so the same positional request
    # means the same thing for every version a stage serves (`assign` refuses a version that
    # reorders it). Every required input is listed, optional ones may be; a positional row may
    # leave out trailing optional columns. None (model.yaml files written before the field
    # existed) means the order of `inputs`, which is how positional requests were read before.
    positional_order: list[str] | None = None

    def positional(self) -> tuple[str, ...]:
        """The effective positional order (the declared one, else the order of `inputs`)."""
        if self.positional_order is not None:
            return tuple(self.positional_order)
        return tuple(spec.name for spec in self.inputs)

    def positional_problem(self) -> str | None:
        """Why `positional_order` is not a valid order for these inputs (None when it is)."""
        if self.positional_order is None:
            return None
        specs = {spec.name: spec for spec in self.inputs}
        order = self.positional_order
        unknown = [name for name in order if name not in specs]
        if unknown:
            return f"names inputs the signature does not have: {', '.join(unknown)}"
        if len(set(order)) != len(order):
            return "names an input twice"
        missing = [s.name for s in self.inputs if s.required and s.name not in order]
        if missing:
            return f"leaves out required inputs: {', '.join(missing)}"
        return None


class FileEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An artifact file of the package, relative to the package folder, with its digest."""

    path: str
    sha256: str
    size_bytes: int
    # Where a large file lives outside the registry (https://, s3://, file://): the sync
    # fetches it into the package folder and checks size and sha256 before using it.
    uri: str | None = None


class LinkedSource(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A package whose files live in another git repository, at the commit a tag named when
    it was linked (`registry link`); the registry keeps only model.yaml."""

    git: str
    rev: str
    commit: str
    path: str = ""


class ModelCard(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    owner: str = ""
    training_data: str = ""


class OnnxExport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An ONNX export saved beside a scikit-learn model, verified on the input example."""

    path: str
    max_abs_diff: float
    opset: int


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    format: ModelFormat
    files: list[FileEntry]
    signature: Signature
    # Rows of the input example, e.g. [{"hp": 110, "wt": 2.62, "cyl": 6}].
    input_example: list[dict[str, Any]]
    metrics: dict[str, float] = {}
    card: ModelCard = ModelCard()
    labels: list[str] = []
    # Library versions the model was saved with, e.g. {"python": "3.11.7", "sklearn": "1.5.2"}.
    libraries: dict[str, str] = {}
    # For statsmodels: the formula it was fit with, if any (documentation only).
    formula: str | None = None
    onnx_export: OnnxExport | None = None
    source: LinkedSource | None = None
    schema_version: int = MANIFEST_SCHEMA_VERSION
