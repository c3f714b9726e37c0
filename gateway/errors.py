"""The errors the gateway raises on purpose; `gateway/http_errors.py` maps them to HTTP.

GatewayError
├── ModelLoadError           a version failed to load or warm up (it is never routed to)
│   └── OutputInvalidError   a model's output failed validation (wrong count, type, non-finite)
└── RequestError             a predict request that cannot be answered (one HTTP status each)
    ├── MalformedRequestError     400: the body is not JSON / not one of the accepted shapes
    ├── UnauthorizedError         401: no credential, or one that does not verify
    ├── ForbiddenError            403: the principal may not take this action on this stage
    ├── UnknownModelError         404: no such model or stage (lists what exists)
    ├── MethodNotAllowedError     405: the route exists, the method does not
    ├── RequestTimeoutError       408: the body did not arrive (timed out, or the client left)
    ├── PayloadTooLargeError      413: body bytes or row count over the limit
    ├── UnsupportedMediaTypeError 415: content-type is not application/json
    ├── InputValidationError      422: the inputs do not match the signature (names the path)
    │   └── InputOutOfRangeError  422: valid inputs the model computes a non-finite output for
    ├── HistoryNotFoundError      404: the history asked about does not exist (no journal,
    │                                  before the first activation, an unknown request id)
    ├── ConflictError             409: an outcome already recorded differently, an ambiguous id
    ├── VersionUnavailableError   410: a past version's package is gone or no longer verifies
    ├── NotScorableError          422: feedback for a request that has nothing to score
    ├── ModelNotReadyError        503: the stage has no loaded version yet (or the gateway
    │                             has no desired state yet: not_started())
    ├── AuditUnavailableError     503: fail_closed, and audit records cannot be written now
    ├── OverloadedError           503: the model has its limit of requests in flight
    │                             (`max_concurrent_inferences`); Retry-After
    ├── InferenceTimeoutError     504: no result within the model's `inference_timeout_s`
    └── HistoryUnavailableError   503: the history store cannot be read or written right now

`SettingsError` (a setting could not be read or cast; names the key and source) comes from
`registry_sync.errors`: the settings loader is shared with `stageserve sync`.
"""

from __future__ import annotations

import re
from typing import Any

from registry_sync.errors import SettingsError

__all__ = [
    "AuditUnavailableError",
    "ConflictError",
    "ForbiddenError",
    "GatewayError",
    "HistoryNotFoundError",
    "HistoryUnavailableError",
    "InferenceTimeoutError",
    "InputOutOfRangeError",
    "InputValidationError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "ModelLoadError",
    "ModelNotReadyError",
    "NotScorableError",
    "OutputInvalidError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RequestError",
    "RequestTimeoutError",
    "SettingsError",
    "UnauthorizedError",
    "UnknownModelError",
    "UnsupportedMediaTypeError",
    "VersionUnavailableError",
    "not_started",
    "shown",
]

# What an error message may repeat of a name the client sent (a model, a stage, a field): a
# short prefix, with anything but these characters replaced.
SHOWN_NAME_MAX = 64
_NOT_SHOWN = re.compile(r"[^A-Za-z0-9._\-/@#:+=]")


def shown(name: str) -> str:
    """A client-sent name as error messages may repeat it: at most 64 safe characters
    (others become '?'; longer names end in '...'), so an error never reflects what a client
    smuggles into a name, nor grows with it."""
    head = _NOT_SHOWN.sub("?", name[:SHOWN_NAME_MAX])
    return head + "..." if len(name) > SHOWN_NAME_MAX else head


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ModelLoadError(GatewayError):
    def __init__(self, model: str, version: str, reason: str) -> None:
        self.model = model
        self.version = version
        self.reason = reason
        super().__init__(f"{model} {version} failed to load: {reason}")


class OutputInvalidError(ModelLoadError):
    """Raised on warm-up (then the version is not loaded) and per request (then a counted 500)."""


class RequestError(GatewayError):
    """A request the gateway refuses; `code` is the stable machine-readable error code."""

    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        self.message = message
        self.details = details or {}
        super().__init__(message)


class MalformedRequestError(RequestError):
    code = "malformed_request"


class UnauthorizedError(RequestError):
    """`error` is RFC 6750's code for `WWW-Authenticate` (None: no credential was sent)."""

    code = "unauthorized"

    def __init__(self, message: str, error: str | None) -> None:
        self.error = error
        super().__init__(message)


class ForbiddenError(RequestError):
    code = "forbidden"

    def __init__(self, principal: str, action: str, model: str, stage: str) -> None:
        self.principal = principal
        self.action = action
        self.model = model
        self.stage = stage
        where = f"{model} in stage {stage!r}" if model != "*" else "this gateway"
        super().__init__(
            f"{principal} may not {action} {where}",
            {"action": action, "model": model, "stage": stage},
        )


class UnknownModelError(RequestError):
    code = "not_found"


class MethodNotAllowedError(RequestError):
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        self.method = method
        self.allowed = allowed
        super().__init__(f"method {method} is not allowed here", {"allowed": list(allowed)})


class RequestTimeoutError(RequestError):
    code = "request_timeout"


class PayloadTooLargeError(RequestError):
    code = "payload_too_large"


class UnsupportedMediaTypeError(RequestError):
    code = "unsupported_media_type"


class InputValidationError(RequestError):
    code = "schema_mismatch"

    def __init__(self, path: str, reason: str, kind: str = "type") -> None:
        self.path = path
        self.reason = reason
        # The validation_errors_total{kind} label: type, missing, unknown, category,
        # non_finite, shape.
        self.kind = kind
        super().__init__(f"{path}: {reason}", {"path": path, "reason": reason})


class InputOutOfRangeError(InputValidationError):
    code = "input_out_of_range"

    def __init__(self, row: int) -> None:
        super().__init__(
            f"row {row}",
            "the model's output is not finite for this row: an input is outside the range "
            "the model can compute with",
            "range",
        )
        self.details = {"row": row}


class ModelNotReadyError(RequestError):
    code = "not_ready"


class AuditUnavailableError(RequestError):
    code = "audit_unavailable"


class OverloadedError(RequestError):
    """The model already has `limit` requests admitted and not yet answered (admission.py):
    refused at once, before any inference work, so the admitted ones stay fast."""

    code = "model_overloaded"

    def __init__(self, model: str, limit: int) -> None:
        self.model = model
        super().__init__(
            f"{model} is answering its limit of {limit} requests at once: retry later",
            {"model": model, "max_concurrent": limit},
        )


class InferenceTimeoutError(RequestError):
    """The model gave no result within its inference timeout (from the request's admission)."""

    code = "inference_timeout"

    def __init__(self, model: str, timeout_s: float) -> None:
        self.model = model
        super().__init__(
            f"{model} gave no result within {timeout_s:g} s",
            {"model": model, "timeout_s": timeout_s},
        )


def not_started() -> ModelNotReadyError:
    """Before the first desired state arrives nothing is known, not even which models exist:
    every predict request is 503 (retry), never a 404 that a client would take as final."""
    return ModelNotReadyError(
        "the gateway has not received its desired state yet (starting up)",
        {"reason": "no_desired_state"},
    )


class HistoryNotFoundError(RequestError):
    code = "history_not_found"


class ConflictError(RequestError):
    code = "conflict"


class VersionUnavailableError(RequestError):
    code = "version_unavailable"


class NotScorableError(RequestError):
    code = "not_scorable"


class HistoryUnavailableError(RequestError):
    code = "history_unavailable"
