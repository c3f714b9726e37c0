"""Refused and failed predict requests: the JSON error response and the metrics it counts."""

from __future__ import annotations

from typing import Any, Protocol

from litestar.types import Send

from gateway.errors import RequestError
from gateway.http.errors import error_headers, error_payload, status_of
from gateway.pool.model_pool import ModelPool
from gateway.pool.route_table import Route
from gateway.telemetry.metrics import UNKNOWN, GatewayMetrics

__all__ = [
    "ErrorBodyFormat",
    "ServerFailureError",
    "count_error",
    "error_answer",
    "send_answer",
    "send_error",
]

_JSON = b"application/json"
# validation_errors_total{kind} for refusals that are not InputValidationErrors (which carry
# their own kind: type, missing, unknown, category, non_finite, shape).
_ERROR_KIND = {400: "malformed", 413: "too_large", 415: "content_type"}


class ServerFailureError(Exception):
    """A 500 with a stable code: output_invalid, inference_failed, internal_error."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class ErrorBodyFormat(Protocol):
    def error_body(self, code: str, message: str, details: dict[str, Any]) -> bytes: ...


def error_answer(
    exc: RequestError | ServerFailureError,
    rid: str,
    retry_after_s: int,
    *,
    fmt: ErrorBodyFormat | None = None,
    route: Route | None = None,
    client_rid: str | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The error response in the protocol's shape (`fmt`, default ours): status, headers
    (without content-length), body; with the version headers when a version (`route`)
    handled the request."""
    if isinstance(exc, ServerFailureError):
        status, code, message, details, extra = 500, exc.code, exc.message, {}, []
    else:
        status = status_of(exc)
        code, message, details = exc.code, exc.message, exc.details
        extra = error_headers(exc, retry_after_s)
    payload = (
        fmt.error_body(code, message, details) if fmt else error_payload(code, message, details)
    )
    headers = [
        (b"content-type", _JSON),
        (b"x-request-id", rid.encode()),
        *extra,
        *(route.version_headers if route is not None else ()),
    ]
    if client_rid:
        headers.append((b"x-client-request-id", client_rid.encode()))
    return status, headers, payload


async def send_answer(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], payload: bytes
) -> None:
    """An answer as the two ASGI messages (with its content-length)."""
    headers.append((b"content-length", b"%d" % len(payload)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def send_error(
    send: Send,
    exc: RequestError | ServerFailureError,
    rid: str,
    retry_after_s: int,
    *,
    fmt: ErrorBodyFormat | None = None,
    route: Route | None = None,
    client_rid: str | None = None,
) -> int:
    """Send `error_answer` over ASGI; returns its status."""
    status, headers, payload = error_answer(
        exc, rid, retry_after_s, fmt=fmt, route=route, client_rid=client_rid
    )
    await send_answer(send, status, headers, payload)
    return status


def count_error(
    metrics: GatewayMetrics,
    pool: ModelPool,
    route: Route | None,
    *,
    model: str,
    stage: str,
    exc: Exception,
    status: int,
) -> None:
    """requests_total and validation_errors_total for a refused or failed request."""
    if route is not None:
        route.metrics.status(status).inc()
    else:
        # Label values only from names the desired state knows: clients cannot grow
        # the label set by inventing model or stage names.
        stages = pool.wanted_stages(model)
        model = model if stages else UNKNOWN
        stage = stage if stage in stages else UNKNOWN
        metrics.requests_total.labels(model, stage, "", str(status)).inc()
    kind = getattr(exc, "kind", None) or _ERROR_KIND.get(status)
    if kind is not None:
        metrics.validation_errors_total.labels(model, kind).inc()
