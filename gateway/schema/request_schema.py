"""Per-version request decoding and output validation, generated from the model's Signature.

One `RequestSchema` is built when a version loads; it holds msgspec decoders whose Struct
types mirror the signature, so a request body is decoded and type-checked in one C pass.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import numpy as np

from gateway.errors import InputValidationError, MalformedRequestError, PayloadTooLargeError
from gateway.schema.outputs import OutputCheck
from gateway.schema.validation_errors import validation_error
from registry_sync.package.manifest import Signature

__all__ = ["InputBatch", "RequestSchema"]

_PY_TYPES: dict[str, type] = {
    "double": float,
    "float": float,
    "long": int,
    "integer": int,
    "boolean": bool,
    "string": str,
}
_NUMERIC = frozenset({"double", "float", "long", "integer", "boolean"})
_FORMATS = ("inputs", "dataframe_split", "dataframe_records", "instances")


class InputBatch:
    """Decoded, validated inputs: a float64 matrix (all-numeric signatures) or named columns."""

    __slots__ = ("columns", "matrix", "names", "rows")

    def __init__(
        self,
        names: tuple[str, ...],
        rows: int,
        matrix: np.ndarray | None,
        columns: dict[str, np.ndarray] | None,
    ) -> None:
        self.names = names
        self.rows = rows
        self.matrix = matrix
        self.columns = columns

    def column_map(self) -> dict[str, np.ndarray]:
        """Input name -> 1-D array (views of the matrix for all-numeric signatures)."""
        if self.columns is not None:
            return self.columns
        assert self.matrix is not None
        return {name: self.matrix[:, j] for j, name in enumerate(self.names)}

    def canonical_json(self) -> bytes:
        """The inputs as `{name: [values]}` in signature order: the same bytes for every
        request shape carrying the same values (what the audit record's sha256 is of)."""
        if self.matrix is not None:
            cols = self.matrix.T.tolist()
            return msgspec.json.encode(dict(zip(self.names, cols, strict=True)))
        assert self.columns is not None
        return msgspec.json.encode({n: self.columns[n].tolist() for n in self.names})


class RequestSchema:
    """Decoder for one version's predict body and validator for its outputs."""

    def __init__(
        self, signature: Signature, *, allow_non_finite: bool = False, max_rows: int = 10_000
    ) -> None:
        self.inputs = tuple(signature.inputs)
        self.outputs = tuple(signature.outputs)
        self.names = tuple(c.name for c in self.inputs)
        self.output_names = tuple(c.name for c in self.outputs)
        self.numeric = all(c.type in _NUMERIC for c in self.inputs)
        self._outputs = OutputCheck(signature.outputs)
        self.max_rows = max_rows
        self._categories = {
            c.name: frozenset(c.categories) for c in self.inputs if c.categories is not None
        }
        row_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        col_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for col in self.inputs:
            base: Any = _PY_TYPES[col.type]
            nullable = allow_non_finite and col.type in ("double", "float")
            if not col.required:
                row_fields.append((col.name, base | None, None))
                col_fields.append((col.name, list[base | None] | None, None))
            elif nullable:
                row_fields.append((col.name, base | None))
                col_fields.append((col.name, list[base | None]))
            else:
                row_fields.append((col.name, base))
                col_fields.append((col.name, list[base]))
        self.row_type = msgspec.defstruct("Row", row_fields, forbid_unknown_fields=True)
        columns_type = msgspec.defstruct("Columns", col_fields, forbid_unknown_fields=True)
        self._columns_type = columns_type
        split_type = msgspec.defstruct(
            "DataframeSplit",
            [("columns", list[str]), ("data", list[list[Any]]), ("index", Any, None)],
            forbid_unknown_fields=True,
        )
        rows_t: Any = list[self.row_type]  # type: ignore[name-defined]
        body_type = msgspec.defstruct(
            "PredictRequest",
            [
                ("inputs", rows_t | columns_type | None, None),
                ("dataframe_split", split_type | None, None),
                ("dataframe_records", rows_t | None, None),
                ("instances", rows_t | None, None),
            ],
            forbid_unknown_fields=True,
        )
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(body_type)
        self._rows_type = rows_t
        self._astuple = msgspec.structs.astuple

    # -- inputs ---------------------------------------------------------------------------

    def decode(self, body: bytes) -> InputBatch:
        """Decode and validate a body; raise MalformedRequestError / InputValidationError."""
        try:
            req = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise validation_error(exc) from None
        except msgspec.DecodeError:
            raise MalformedRequestError("request body is not valid JSON") from None
        inputs = req.inputs
        # The common case first: only `inputs`, decided with three identity checks.
        if (
            inputs is not None
            and req.dataframe_split is None
            and req.dataframe_records is None
            and req.instances is None
        ):
            if type(inputs) is list:
                return self._from_rows(inputs, "$.inputs")
            return self._from_columns(inputs, "$.inputs")
        present = [f for f in _FORMATS if getattr(req, f) is not None]
        if len(present) != 1:
            raise InputValidationError(
                "$", "expected exactly one of " + ", ".join(_FORMATS), "shape"
            )
        if req.dataframe_split is not None:
            return self._from_split(req.dataframe_split)
        if req.dataframe_records is not None:
            return self._from_rows(req.dataframe_records, "$.dataframe_records")
        return self._from_rows(req.instances, "$.instances")

    def decode_columns(self, columns: dict[str, list[Any]]) -> InputBatch:
        """Validate already-parsed columns (another protocol's body); paths are `$.<name>[i]`."""
        try:
            cols = msgspec.convert(columns, type=self._columns_type)
        except msgspec.ValidationError as exc:
            raise validation_error(exc) from None
        return self._from_columns(cols, "$")

    def _check_count(self, n: int, path: str) -> None:
        if n == 0:
            raise InputValidationError(path, "no rows", "shape")
        if n > self.max_rows:
            raise PayloadTooLargeError(
                f"{n} rows is more than the limit of {self.max_rows}",
                {"rows": n, "max_rows": self.max_rows},
            )

    def _from_rows(self, rows: list[Any], path: str) -> InputBatch:
        n = len(rows)
        self._check_count(n, path)
        astuple = self._astuple
        if self._categories:
            for i, row in enumerate(rows):
                for name, allowed in self._categories.items():
                    value = getattr(row, name)
                    if value is not None and value not in allowed:
                        raise _category_error(f"{path}[{i}].{name}")
        if self.numeric:
            matrix = np.array([astuple(r) for r in rows], dtype=np.float64)
            return InputBatch(self.names, n, matrix, None)
        values = list(zip(*(astuple(r) for r in rows), strict=True))
        return self._batch(n, {name: list(values[j]) for j, name in enumerate(self.names)})

    def _from_columns(self, cols: Any, path: str) -> InputBatch:
        lists: dict[str, list[Any]] = {}
        n = -1
        for name in self.names:
            values = getattr(cols, name)
            if values is None:
                continue
            if n == -1:
                n = len(values)
            elif len(values) != n:
                raise InputValidationError(
                    f"{path}.{name}", "columns have different lengths", "shape"
                )
            lists[name] = values
        self._check_count(max(n, 0), path)
        for name, allowed in self._categories.items():
            for i, value in enumerate(lists.get(name, ())):
                if value is not None and value not in allowed:
                    raise _category_error(f"{path}.{name}[{i}]")
        for name in self.names:
            lists.setdefault(name, [None] * n)
        return self._batch(n, lists)

    def _from_split(self, split: Any) -> InputBatch:
        columns = split.columns
        if len(set(columns)) != len(columns):
            raise InputValidationError("$.dataframe_split.columns", "column names repeat", "shape")
        index = {name: j for j, name in enumerate(columns)}
        records = []
        for i, row in enumerate(split.data):
            if len(row) != len(columns):
                raise InputValidationError(
                    f"$.dataframe_split.data[{i}]",
                    f"expected {len(columns)} values, got {len(row)}",
                    "shape",
                )
            records.append(dict(zip(columns, row, strict=True)))
        try:
            rows = msgspec.convert(records, type=self._rows_type)
        except msgspec.ValidationError as exc:
            err = validation_error(exc)
            m = re.match(r"^\$\[(\d+)\]\.(\w+)", err.path)
            if m and m[2] in index:
                path = f"$.dataframe_split.data[{m[1]}][{index[m[2]]}]"
            elif m:
                path = f"$.dataframe_split.columns ({m[2]})"
            else:
                path = "$.dataframe_split" + err.path[1:]
            raise InputValidationError(path, err.reason, err.kind) from None
        return self._from_rows(rows, "$.dataframe_split.data")

    def _batch(self, n: int, lists: dict[str, list[Any]]) -> InputBatch:
        if self.numeric:
            matrix = np.array([lists[name] for name in self.names], dtype=np.float64).T
            return InputBatch(self.names, n, np.ascontiguousarray(matrix), None)
        columns: dict[str, np.ndarray] = {}
        for col in self.inputs:
            dtype = object if col.type == "string" else np.float64
            columns[col.name] = np.array(lists[col.name], dtype=dtype)
        return InputBatch(self.names, n, None, columns)

    # -- outputs --------------------------------------------------------------------------

    def predictions(self, out: Any, n: int) -> list[Any]:
        """Check a model's output and turn it into JSON-ready values (see outputs.py)."""
        return self._outputs.predictions(out, n)


def _category_error(path: str) -> InputValidationError:
    return InputValidationError(path, "value is not one of the declared categories", "category")
