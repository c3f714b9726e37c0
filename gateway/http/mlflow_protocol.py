"""MLflow's scoring protocol (`mlflow models serve`) as a body format of the predict route.

Requests are what MLflow's scoring server reads: JSON (`dataframe_split` with its `index`,
`dataframe_records`, `instances` as rows or columns, `inputs`, an optional `params`) or
`text/csv` with a header row. As in MLflow, input columns the signature does not have are
ignored (counted in `stageserve_extra_columns_total`, logged once per model) and integral
floats feed integer inputs. `params` are refused with a clear message: none of stageserve's
model formats takes any (MLflow would ignore them with a warning, which silently answers
something other than what the client asked for). Answers are `{"predictions": [...]}`,
errors MLflow's `{"error_code", "message"}`.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from typing import Any

import msgspec

from gateway.errors import InputValidationError, MalformedRequestError, UnsupportedMediaTypeError
from gateway.http.body_format import Headers, RequestHead
from gateway.pool.route_table import Route
from gateway.schema.duplicate_keys import refuse_duplicate_keys
from gateway.schema.request_schema import InputBatch, RequestSchema
from gateway.telemetry.metrics import GatewayMetrics

__all__ = ["MlflowBody", "mlflow_error_body"]

log = logging.getLogger("stageserve.mlflow")

_JSON = b"application/json"
_CSV = b"text/csv"
_JSON_HEADERS: Headers = ((b"content-type", _JSON),)
# stageserve's error codes -> the error codes MLflow's scoring server answers with.
_MLFLOW_CODES = {
    "malformed_request": "MALFORMED_REQUEST",
    "schema_mismatch": "BAD_REQUEST",
    "not_found": "RESOURCE_DOES_NOT_EXIST",
    "not_ready": "TEMPORARILY_UNAVAILABLE",
    "payload_too_large": "BAD_REQUEST",
    "unsupported_media_type": "BAD_REQUEST",
    "method_not_allowed": "BAD_REQUEST",
}
_ROWS_KEYS = ("dataframe_records", "instances", "inputs")
# Names of ignored columns go to the log only when they look like names, and never long.
_PRINTABLE_NAME = re.compile(r"^[A-Za-z0-9_.\- ]{1,64}$")
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


class _Prediction(msgspec.Struct, frozen=True):
    predictions: list[Any]


def mlflow_error_body(code: str, message: str) -> bytes:
    """MLflow's error shape, `{"error_code": "BAD_REQUEST", "message": "..."}`."""
    return msgspec.json.encode(
        {"error_code": _MLFLOW_CODES.get(code, "INTERNAL_ERROR"), "message": message}
    )


class MlflowBody:
    """The `/invocations` body format for the predict route."""

    usage = "POST /invocations?model=NAME"

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._encode = msgspec.json.Encoder().encode
        self._extra_columns = metrics.extra_columns_total
        self._logged: set[str] = set()

    def check_media_type(self, media_type: bytes | None) -> None:
        if media_type not in (None, _JSON, _CSV):
            raise UnsupportedMediaTypeError(
                "content-type must be application/json or text/csv",
                {"expected": ["application/json", "text/csv"]},
            )

    def decode(self, route: Route, body: bytes, head: RequestHead) -> tuple[InputBatch, Any]:
        schema = route.loaded.schema
        if head.media_type == _CSV:
            batch, extras = _from_csv(schema, body)
        else:
            batch, extras = _from_json(schema, body)
        if extras:
            self._count_extras(route, extras)
        return batch, None

    def encode(
        self, route: Route, rid: str, predictions: list[Any], context: Any
    ) -> tuple[bytes, Headers]:
        del route, rid, context
        return self._encode(_Prediction(predictions)), _JSON_HEADERS

    def error_body(self, code: str, message: str, details: dict[str, Any]) -> bytes:
        del details
        return mlflow_error_body(code, message)

    def _count_extras(self, route: Route, extras: list[str]) -> None:
        self._extra_columns.labels(route.model).inc()
        if route.model in self._logged:
            return
        self._logged.add(route.model)
        shown = [n if _PRINTABLE_NAME.match(n) else "<unprintable name>" for n in extras[:5]]
        log.warning(
            "ignoring input columns not in the signature of %s %s: %s (as MLflow does; "
            "counted in stageserve_extra_columns_total, logged once per model)",
            route.model,
            route.loaded.version,
            ", ".join(shown) + (", ..." if len(extras) > 5 else ""),
        )


def _from_json(schema: RequestSchema, body: bytes) -> tuple[InputBatch, list[str]]:
    """The strict decoder first (what nearly every request needs); only a body it refuses
    for an unknown field (`params`, an extra column) is read again, leniently."""
    try:
        return schema.decode(body), []
    except InputValidationError as exc:
        if exc.kind != "unknown":
            raise
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise MalformedRequestError("request body is not valid JSON") from None
    except RecursionError:  # nested ~1000 deep (`params` is free-form)
        raise MalformedRequestError("request body nests too deeply") from None
    # Read as a plain dict a repeated key would vanish: check this (rare) body exactly.
    refuse_duplicate_keys(body, 0)
    if not isinstance(doc, dict):
        raise InputValidationError("$", "expected an object", "type")
    params = doc.pop("params", None)
    if params:
        raise InputValidationError(
            "$.params",
            "this model takes no params (its signature declares none); remove them",
            "unknown",
        )
    names = set(schema.names)
    split = doc.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("columns"), list):
        columns = [str(c) for c in split["columns"]]
        extras = [c for c in columns if c not in names]
        if extras and set(split) <= {"columns", "data", "index"} and len(doc) == 1:
            data = split.get("data")
            if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
                return schema.decode(msgspec.json.encode(doc)), []
            return schema.decode_split(columns, data, frozenset(extras)), extras
    extras = []
    for key in _ROWS_KEYS:
        value = doc.get(key)
        if isinstance(value, list):
            for row in value:
                if isinstance(row, dict):
                    extras.extend(_drop_unknown(row, names))
        elif isinstance(value, dict):
            extras.extend(_drop_unknown(value, names))
    return schema.decode(msgspec.json.encode(doc)), sorted(set(extras))


def _drop_unknown(mapping: dict[str, Any], names: set[str]) -> list[str]:
    unknown = [key for key in mapping if key not in names]
    for key in unknown:
        del mapping[key]
    return unknown


def _from_csv(schema: RequestSchema, body: bytes) -> tuple[InputBatch, list[str]]:
    """A CSV with a header row (what `DataFrame.to_csv(index=False)` writes), typed by the
    signature; an empty cell is a missing value. Errors name the data row and column."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedRequestError("the CSV body is not UTF-8 text") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        raise MalformedRequestError("the body is not valid CSV") from None
    if not rows:
        raise InputValidationError("csv", "no header row", "shape")
    header, data = rows[0], [row for row in rows[1:] if row]
    if len(set(header)) != len(header):
        raise InputValidationError("csv header", "column names repeat", "shape")
    extras = [name for name in header if name not in schema.types]
    columns: dict[str, list[Any]] = {}
    for j, name in enumerate(header):
        if name in extras:
            continue
        column_type = schema.types[name]
        values = []
        for i, row in enumerate(data):
            if len(row) != len(header):
                raise InputValidationError(
                    f"csv row {i + 1}", f"expected {len(header)} values, got {len(row)}", "shape"
                )
            values.append(_cell(row[j], column_type, i, name))
        columns[name] = values
    try:
        return schema.decode_columns(columns), extras
    except InputValidationError as exc:
        raise _csv_location(exc) from None


def _cell(text: str, column_type: str, row: int, name: str) -> Any:
    if text == "":
        return None
    try:
        if column_type in ("double", "float"):
            return float(text)
        if column_type in ("long", "integer"):
            try:
                return int(text)
            except ValueError:
                return float(text)  # "6.0": integral floats are integers (checked later)
    except ValueError:
        raise InputValidationError(
            f"csv row {row + 1}, column {name!r}", f"expected a {column_type}", "type"
        ) from None
    if column_type == "boolean":
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise InputValidationError(
            f"csv row {row + 1}, column {name!r}", "expected true or false", "type"
        )
    return text


_COLUMN_PATH = re.compile(r"^\$\.(\w+)(?:\[(\d+)\])?")


def _csv_location(exc: InputValidationError) -> InputValidationError:
    """`$.hp[3]` (a column path) -> `csv row 4, column 'hp'`."""
    m = _COLUMN_PATH.match(exc.path)
    if m is None:
        return exc
    where = f"csv row {int(m[2]) + 1}, column {m[1]!r}" if m[2] else f"csv column {m[1]!r}"
    return InputValidationError(where, exc.reason, exc.kind)
