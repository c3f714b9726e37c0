"""Per-version request decoding and output validation, generated from the model's Signature.

One `RequestSchema` is built when a version loads; it holds msgspec decoders whose Struct
types mirror the signature, so a request body is decoded and type-checked in one C pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import chain
from typing import Annotated, Any

import msgspec
import numpy as np

from gateway.errors import InputValidationError, MalformedRequestError, PayloadTooLargeError
from gateway.schema.duplicate_keys import refuse_duplicate_keys
from gateway.schema.outputs import OutputCheck
from gateway.schema.validation_errors import validation_error
from registry_sync.package.manifest import Signature

__all__ = ["InputBatch", "RequestSchema"]

# long and integer are MLflow's int64 and int32: a JSON integer outside them is refused (422)
# at decode, before it reaches numpy (which raised OverflowError past float64's range: a 500).
_INT_RANGE = {"long": 2**63, "integer": 2**31}
_PY_TYPES: dict[str, Any] = {
    "double": float,
    "float": float,
    # An integral float (6.0, what pandas writes for an integer column holding a NaN) is an
    # integer value, as MLflow reads it: decoded as either, then checked by _check_integral.
    "long": Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | float,
    "integer": Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] | float,
    "boolean": bool,
    "string": str,
}
_NUMERIC = frozenset({"double", "float", "long", "integer", "boolean"})
_INTEGRAL = frozenset({"long", "integer"})
_FORMATS = ("inputs", "dataframe_split", "dataframe_records", "instances")
# msgspec's error when a list of lists arrives where rows (objects) were expected.
_POSITIONAL_ROWS = re.compile(
    r"^Expected `object`, got `array` - at `\$\.(inputs|instances)\[0\]`$"
)
_SPLIT_PATH = re.compile(r"^\$\[(\d+)\]\.(\w+)")
# canonical_json's (msgspec.json.encode builds an encoder per call: +0.2 µs per record).
_JSON = msgspec.json.Encoder()


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
            return _JSON.encode(dict(zip(self.names, cols, strict=True)))
        assert self.columns is not None
        return _JSON.encode({n: self.columns[n].tolist() for n in self.names})


class RequestSchema:
    """Decoder for one version's predict body and validator for its outputs."""

    def __init__(
        self, signature: Signature, *, allow_non_finite: bool = False, max_rows: int = 10_000
    ) -> None:
        self.inputs = tuple(signature.inputs)
        self.outputs = tuple(signature.outputs)
        self.names = tuple(c.name for c in self.inputs)
        self.types = {c.name: c.type for c in self.inputs}
        self.allow_non_finite = allow_non_finite
        # Positional inputs (a V2 [rows, k] tensor, a list of lists) are read in the model's
        # declared positional order, never in whatever order this version lists its inputs.
        self.positional = signature.positional()
        required = {c.name for c in self.inputs if c.required}
        self.min_positional = max(
            (j + 1 for j, name in enumerate(self.positional) if name in required), default=1
        )
        self._integral = tuple(j for j, c in enumerate(self.inputs) if c.type in _INTEGRAL)
        self.output_names = tuple(c.name for c in self.outputs)
        self.numeric = all(c.type in _NUMERIC for c in self.inputs)
        self._required = sum(1 for c in self.inputs if c.required)
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
        # gc=False: a row holds only numbers, strings and None (never a cycle), so the
        # collector need not track the hundred Structs of a 100-row request.
        self.row_type = msgspec.defstruct("Row", row_fields, forbid_unknown_fields=True, gc=False)
        columns_type = msgspec.defstruct("Columns", col_fields, forbid_unknown_fields=True)
        self._columns_type = columns_type
        # Every input a required, uncategorised float: `dataframe_split` cells are decoded as
        # floats (msgspec checks each cell's type, as the row Struct would) and the rows become
        # the matrix in one numpy call, without a dict or Struct per row (decode_split).
        self._float_cells = not allow_non_finite and all(
            c.type in ("double", "float") and c.required and c.categories is None
            for c in self.inputs
        )
        # column order sent -> the permutation into signature order (None: the same order)
        self._split_order: dict[tuple[str, ...], np.ndarray | None] = {}
        rows_t: Any = list[self.row_type]  # type: ignore[name-defined]

        def body_decoder(cell_type: Any) -> msgspec.json.Decoder[Any]:
            split_type = msgspec.defstruct(
                "DataframeSplit",
                [("columns", list[str]), ("data", list[list[cell_type]]), ("index", Any, None)],
                forbid_unknown_fields=True,
            )
            body_type = msgspec.defstruct(
                "PredictRequest",
                [
                    ("inputs", rows_t | columns_type | None, None),
                    ("dataframe_split", split_type | None, None),
                    ("dataframe_records", rows_t | None, None),
                    # MLflow reads `instances` as rows or as columns.
                    ("instances", rows_t | columns_type | None, None),
                ],
                forbid_unknown_fields=True,
            )
            return msgspec.json.Decoder(body_type)

        # A body the float-cell decoder refuses is decoded again by the general one, whose
        # refusals (and MLflow's reading of extra columns) are the contract.
        self._general_decoder = body_decoder(Any)
        self._decoder = body_decoder(float) if self._float_cells else self._general_decoder
        positional_type = msgspec.defstruct(
            "PositionalRequest",
            [("inputs", list[list[Any]] | None, None), ("instances", list[list[Any]] | None, None)],
            forbid_unknown_fields=True,
        )
        self._positional_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(positional_type)
        self._rows_type = rows_t
        self._astuple = msgspec.structs.astuple
        # No row value can be None (every input required, none nullable).
        self._never_none = not allow_non_finite and all(c.required for c in self.inputs)

    # -- inputs ---------------------------------------------------------------------------

    def decode(self, body: bytes) -> InputBatch:
        """Decode and validate a body; raise MalformedRequestError / InputValidationError."""
        return self._decode(body, self._decoder)

    def _decode(self, body: bytes, decoder: msgspec.json.Decoder[Any]) -> InputBatch:
        try:
            req = decoder.decode(body)
        except msgspec.ValidationError as exc:
            if decoder is not self._general_decoder:
                return self._decode(body, self._general_decoder)
            if _POSITIONAL_ROWS.match(str(exc)):
                return self._decode_positional(body)
            raise validation_error(exc) from None
        except msgspec.DecodeError:
            raise MalformedRequestError("request body is not valid JSON") from None
        except RecursionError:  # arrays nested ~1000 deep in a field typed Any (index, data)
            raise MalformedRequestError("request body nests too deeply") from None
        inputs = req.inputs
        # Each row (or the columns object) has at least the required keys: the lower bound
        # of distinct keys that refuse_duplicate_keys compares with the body's ':' count.
        required = self._required
        # The common case first: only `inputs`, decided with three identity checks.
        if (
            inputs is not None
            and req.dataframe_split is None
            and req.dataframe_records is None
            and req.instances is None
        ):
            if type(inputs) is list:
                refuse_duplicate_keys(body, 1 + len(inputs) * required)
                return self._from_rows(inputs, "$.inputs")
            refuse_duplicate_keys(body, 1 + required)
            return self._from_columns(inputs, "$.inputs")
        present = [f for f in _FORMATS if getattr(req, f) is not None]
        if len(present) != 1:
            raise InputValidationError(
                "$", "expected exactly one of " + ", ".join(_FORMATS), "shape"
            )
        if req.dataframe_split is not None:
            refuse_duplicate_keys(body, 3)  # dataframe_split, columns, data
            split = req.dataframe_split
            floats = decoder is not self._general_decoder
            return self.decode_split(split.columns, split.data, floats=floats)
        if req.dataframe_records is not None:
            refuse_duplicate_keys(body, 1 + len(req.dataframe_records) * required)
            return self._from_rows(req.dataframe_records, "$.dataframe_records")
        if type(req.instances) is list:
            refuse_duplicate_keys(body, 1 + len(req.instances) * required)
            return self._from_rows(req.instances, "$.instances")
        refuse_duplicate_keys(body, 1 + required)
        return self._from_columns(req.instances, "$.instances")

    def decode_split(
        self,
        columns: list[str],
        data: list[list[Any]],
        ignore: frozenset[str] = frozenset(),
        *,
        floats: bool = False,
    ) -> InputBatch:
        """MLflow's `dataframe_split` (named columns, rows of values); columns in `ignore` are
        dropped (MLflow's routes ignore extra columns), error paths keep the sent positions.
        `floats`: every cell was decoded as a float already (see __init__)."""
        if len(set(columns)) != len(columns):
            raise InputValidationError("$.dataframe_split.columns", "column names repeat", "shape")
        if floats and not ignore:
            batch = self._float_split(columns, data)
            if batch is not None:
                return batch
        for i, row in enumerate(data):
            if len(row) != len(columns):
                raise InputValidationError(
                    f"$.dataframe_split.data[{i}]",
                    f"expected {len(columns)} values, got {len(row)}",
                    "shape",
                )
        return self._from_split(
            columns,
            data,
            "$.dataframe_split.data",
            cell=lambda i, j: f"$.dataframe_split.data[{i}][{j}]",
            missing_path="$.dataframe_split.columns",
            ignore=ignore,
        )

    def _float_split(self, columns: list[str], data: list[list[float]]) -> InputBatch | None:
        """The matrix of float cells under exactly the signature's columns (in any order), in
        one numpy call; None for anything else (ragged rows, other columns, no rows), which
        the general path refuses with its precise errors."""
        key = tuple(columns)
        try:
            order = self._split_order[key]
        except KeyError:
            if len(key) != len(self.names) or set(key) != set(self.names):
                return None
            order = None if key == self.names else np.array([key.index(n) for n in self.names])
            if len(self._split_order) < 64:  # bounded: column orders are the client's choice
                self._split_order[key] = order
        try:
            matrix = np.array(data, dtype=np.float64)
        except ValueError:  # ragged
            return None
        if matrix.ndim != 2 or matrix.shape[1] != len(key) or not len(matrix):
            return None
        n = len(matrix)
        self._check_count(n, "$.dataframe_split.data")
        if order is not None:
            matrix = np.ascontiguousarray(matrix[:, order])
        return InputBatch(self.names, n, matrix, None)

    def _decode_positional(self, body: bytes) -> InputBatch:
        """`{"inputs": [[110, 2.62, 6], ...]}` (or `instances`): rows in positional order."""
        try:
            req = self._positional_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise validation_error(exc) from None
        except RecursionError:
            raise MalformedRequestError("request body nests too deeply") from None
        refuse_duplicate_keys(body, 1)
        if (req.inputs is None) == (req.instances is None):
            raise InputValidationError("$", "expected exactly one of inputs, instances", "shape")
        key = "inputs" if req.inputs is not None else "instances"
        return self.decode_positional(getattr(req, key), f"$.{key}")

    def decode_positional(self, data: list[list[Any]], path: str) -> InputBatch:
        """Rows of values in the positional order; a row may leave out trailing optional
        columns. Paths name the row and position: `$.inputs[3][1]`."""
        order = self.positional
        width = len(order)
        for i, row in enumerate(data):
            if not self.min_positional <= len(row) <= width:
                expected = (
                    str(width)
                    if self.min_positional == width
                    else f"{self.min_positional} to {width}"
                )
                raise InputValidationError(
                    f"{path}[{i}]",
                    f"expected {expected} values in the positional order "
                    f"({', '.join(order)}), got {len(row)}",
                    "shape",
                )
        return self._from_split(
            list(order), data, path, cell=lambda i, j: f"{path}[{i}][{j}]", missing_path=path
        )

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

    def _from_rows(
        self, rows: list[Any], path: str, cell: Callable[[int, str], str] | None = None
    ) -> InputBatch:
        n = len(rows)
        self._check_count(n, path)
        where = cell or (lambda i, name: f"{path}[{i}].{name}")
        astuple = self._astuple
        if self.numeric:
            if self._never_none:
                # The rows' values one after another into one buffer: no list of tuples for
                # numpy to inspect (half the instructions of np.array at 100 rows, callgrind).
                k = len(self.names)
                flat = chain.from_iterable(map(astuple, rows))
                matrix = np.fromiter(flat, np.float64, n * k).reshape(n, k)
            else:  # None (a missing optional value) becomes NaN here
                matrix = np.array([astuple(r) for r in rows], dtype=np.float64)
            batch = InputBatch(self.names, n, matrix, None)
        else:
            values = list(zip(*(astuple(r) for r in rows), strict=True))
            batch = self._batch(n, {name: list(values[j]) for j, name in enumerate(self.names)})
        if self._integral:
            self._check_integral(batch, where)
        if self._categories:
            for i, row in enumerate(rows):
                for name, allowed in self._categories.items():
                    value = getattr(row, name)
                    if value is not None and value not in allowed:
                        raise _category_error(where(i, name))
        return batch

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
        for name in self.names:
            lists.setdefault(name, [None] * n)
        batch = self._batch(n, lists)
        if self._integral:
            self._check_integral(batch, lambda i, name: f"{path}.{name}[{i}]")
        for name, allowed in self._categories.items():
            for i, value in enumerate(lists[name]):
                if value is not None and value not in allowed:
                    raise _category_error(f"{path}.{name}[{i}]")
        return batch

    def _check_integral(self, batch: InputBatch, where: Callable[[int, str], str]) -> None:
        """A long/integer input given a fraction (6.5) is refused; 6.0 is the integer 6."""
        for j in self._integral:
            name = self.names[j]
            col = batch.matrix[:, j] if batch.matrix is not None else batch.columns[name]  # type: ignore[index]
            # NaN is a missing optional value here, not a fraction.
            bad = np.flatnonzero(np.isfinite(col) & (col != np.floor(col)))
            if bad.size:
                raise InputValidationError(
                    where(int(bad[0]), name), "expected an integer, got a fraction", "type"
                )
            limit = _INT_RANGE[self.inputs[j].type]
            far = np.flatnonzero(np.isfinite(col) & ((col >= limit) | (col < -limit)))
            if far.size:
                raise InputValidationError(
                    where(int(far[0]), name),
                    f"integer out of range (|value| < 2^{limit.bit_length() - 1})",
                    "range",
                )

    def _from_split(
        self,
        columns: list[str],
        data: list[list[Any]],
        path: str,
        *,
        cell: Callable[[int, int], str],
        missing_path: str,
        ignore: frozenset[str] = frozenset(),
    ) -> InputBatch:
        """Rows of values under named `columns` (rows may be shorter: trailing columns left
        out; columns in `ignore` are dropped); `cell(row, position)` is the path an error
        names."""
        index = {name: j for j, name in enumerate(columns)}
        if ignore:
            kept = [j for j, name in enumerate(columns) if name not in ignore]
            records = [{columns[j]: row[j] for j in kept if j < len(row)} for row in data]
        else:
            records = [dict(zip(columns, row, strict=False)) for row in data]
        try:
            rows = msgspec.convert(records, type=self._rows_type)
        except msgspec.ValidationError as exc:
            err = validation_error(exc)
            m = _SPLIT_PATH.match(err.path)
            if m and m[2] in index:
                where = cell(int(m[1]), index[m[2]])
            elif m:
                where = f"{missing_path} ({m[2]})"
            else:
                where = path + err.path[1:]
            raise InputValidationError(where, err.reason, err.kind) from None
        return self._from_rows(rows, path, cell=lambda i, name: cell(i, index[name]))

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
