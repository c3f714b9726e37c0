"""How a protocol's request body becomes a batch and predictions its response body: the
`BodyFormat` seam of the predict route, and stageserve's own format (`PredictBody`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from gateway.errors import UnsupportedMediaTypeError
from gateway.http.errors import error_payload
from gateway.pool.route_table import Route
from gateway.schema.request_schema import InputBatch

__all__ = ["BodyFormat", "Headers", "PredictBody", "PredictResponse", "RequestHead"]

_JSON = b"application/json"

Headers = Sequence[tuple[bytes, bytes]]
_JSON_HEADERS: Headers = ((b"content-type", _JSON),)


class PredictResponse(msgspec.Struct, frozen=True):
    model: str
    stage: str
    version: str
    request_id: str
    predictions: list[Any]


class RequestHead:
    """What a body format needs from the request line and headers besides the body."""

    __slots__ = ("header_length", "media_type", "query")

    def __init__(self, media_type: bytes | None, header_length: bytes | None, query: bytes):
        self.media_type = media_type  # lower-cased, parameters cut: b"application/json"
        self.header_length = header_length  # Inference-Header-Content-Length (binary V2)
        self.query = query


class BodyFormat(Protocol):
    """How a protocol's request body becomes a batch, predictions its response body, and a
    refusal its error body (each protocol's clients read their own error shape)."""

    usage: str

    def check_media_type(self, media_type: bytes | None) -> None:
        """Raise UnsupportedMediaTypeError unless the body format reads this media type."""
        ...

    def decode(self, route: Route, body: bytes, head: RequestHead) -> tuple[InputBatch, Any]:
        """The validated batch, and whatever `encode` needs from the request."""
        ...

    def encode(
        self, route: Route, rid: str, predictions: list[Any], context: Any
    ) -> tuple[bytes, Headers]:
        """The response body and its content headers (content-type, ...)."""
        ...

    def error_body(self, code: str, message: str, details: dict[str, Any]) -> bytes: ...


class PredictBody:
    """stageserve's own format: `{"inputs": ...}` (and MLflow's) in, `PredictResponse` out."""

    usage = "POST /predict/{model}"

    def __init__(self) -> None:
        self._encode = msgspec.json.Encoder().encode

    def check_media_type(self, media_type: bytes | None) -> None:
        # No content-type at all is read as JSON (curl -d, many HTTP libraries' defaults).
        if media_type is not None and media_type != _JSON:
            raise UnsupportedMediaTypeError(
                "content-type must be application/json", {"expected": "application/json"}
            )

    def decode(self, route: Route, body: bytes, head: RequestHead) -> tuple[InputBatch, Any]:
        return route.loaded.schema.decode(body), None

    def encode(
        self, route: Route, rid: str, predictions: list[Any], context: Any
    ) -> tuple[bytes, Headers]:
        del context
        version = route.loaded.version
        payload = self._encode(PredictResponse(route.model, route.stage, version, rid, predictions))
        return payload, _JSON_HEADERS

    def error_body(self, code: str, message: str, details: dict[str, Any]) -> bytes:
        return error_payload(code, message, details)
