"""The one place errors become HTTP: status codes, the JSON error body, extra headers.

Every error body is `{"error": {"code", "message", "details"}}` and is built from the error's
own attributes, never from the request body, so no input value is ever echoed back.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway.errors import (
    AuditUnavailableError,
    ConflictError,
    ForbiddenError,
    HistoryNotFoundError,
    HistoryUnavailableError,
    InferenceTimeoutError,
    InputValidationError,
    MalformedRequestError,
    MethodNotAllowedError,
    ModelNotReadyError,
    NotScorableError,
    OverloadedError,
    PayloadTooLargeError,
    RequestError,
    RequestTimeoutError,
    UnauthorizedError,
    UnknownModelError,
    UnsupportedMediaTypeError,
    VersionUnavailableError,
)

__all__ = [
    "STATUS_BY_ERROR",
    "ErrorBody",
    "error_headers",
    "error_payload",
    "exception_handlers",
    "status_of",
]

log = logging.getLogger("stageserve.http")

STATUS_BY_ERROR: dict[type[RequestError], int] = {
    MalformedRequestError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    UnknownModelError: 404,
    HistoryNotFoundError: 404,
    MethodNotAllowedError: 405,
    RequestTimeoutError: 408,
    ConflictError: 409,
    VersionUnavailableError: 410,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    InputValidationError: 422,
    NotScorableError: 422,
    ModelNotReadyError: 503,
    AuditUnavailableError: 503,
    HistoryUnavailableError: 503,
    OverloadedError: 503,
    InferenceTimeoutError: 504,
}
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "schema_mismatch",
    500: "internal_error",
    503: "not_ready",
    504: "gateway_timeout",
}


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


_encoder = msgspec.json.Encoder()


def status_of(exc: RequestError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 400


def error_payload(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    return _encoder.encode(ErrorBody(ErrorDetail(code, message, details or {})))


def error_headers(exc: RequestError, retry_after_s: int) -> list[tuple[bytes, bytes]]:
    """Headers an error needs besides content-type: Allow on 405, Retry-After on 503,
    WWW-Authenticate on 401."""
    if isinstance(exc, UnauthorizedError):
        error = f', error="{exc.error}"' if exc.error else ""
        return [(b"www-authenticate", f'Bearer realm="stageserve"{error}'.encode())]
    if isinstance(exc, MethodNotAllowedError):
        return [(b"allow", ", ".join(exc.allowed).encode())]
    if isinstance(
        exc,
        ModelNotReadyError | AuditUnavailableError | HistoryUnavailableError | OverloadedError,
    ):
        return [(b"retry-after", str(retry_after_s).encode())]
    return []


def _request_error(_: Request[Any, Any, Any], exc: RequestError) -> Response[bytes]:
    status = status_of(exc)
    headers = {k.decode(): v.decode() for k, v in error_headers(exc, 5)}
    return Response(
        error_payload(exc.code, exc.message, exc.details),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    # Litestar's own 404/405 (no such route or method): same body shape as ours. Its detail
    # strings are fixed phrases; parameter validation errors (which could quote input) are
    # reduced to the status phrase.
    status = exc.status_code
    code = _CODE_BY_STATUS.get(status, "http_error")
    message = exc.detail if status in (404, 405) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    return Response(
        error_payload(code, message),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _internal(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", exc_info=exc)
    return Response(
        error_payload("internal_error", "internal server error"),
        status_code=500,
        media_type="application/json",
    )


def exception_handlers() -> dict[int | type[Exception], Any]:
    """For `Litestar(exception_handlers=...)`: the non-predict routes use the same bodies."""
    return {RequestError: _request_error, HTTPException: _http_exception, Exception: _internal}
