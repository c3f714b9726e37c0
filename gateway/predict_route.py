"""`POST /predict/{model}`: the hot path, as a raw ASGI handler inside the Litestar app.

Everything a request needs is prebuilt when a version is routed to (decoder, metric children,
header pairs), so a request does: read body → decode into Structs → predict → validate output
→ encode → send, then three metric updates and one queue put for the audit record.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Any
from urllib.parse import parse_qs

import msgspec
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send

from gateway.audit import AuditWriter
from gateway.errors import (
    MethodNotAllowedError,
    ModelNotReadyError,
    PayloadTooLargeError,
    RequestError,
    UnknownModelError,
    UnsupportedMediaTypeError,
)
from gateway.http_errors import error_headers, error_payload, status_of
from gateway.inference import Inference
from gateway.metrics import UNKNOWN, GatewayMetrics
from gateway.pool import ModelPool, Route
from gateway.request_schema import InputBatch

__all__ = ["PredictResponse", "PredictRoute", "RequestIds"]

log = logging.getLogger("stageserve.predict")
_MAX_REQUEST_ID = 128
_JSON = b"application/json"
# validation_errors_total{kind} for refusals that are not InputValidationErrors (which carry
# their own kind: type, missing, unknown, category, non_finite, shape).
_ERROR_KIND = {400: "malformed", 413: "too_large", 415: "content_type"}


class PredictResponse(msgspec.Struct, frozen=True):
    model: str
    stage: str
    version: str
    request_id: str
    predictions: list[Any]


class RequestIds:
    """Short unique ids: a random per-process prefix and a counter (no uuid4 per request)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._count):x}"

    def keep_or_new(self, incoming: bytes | None) -> str:
        # An incoming id is kept when it is short, printable ASCII (it goes back in a header).
        if incoming and len(incoming) <= _MAX_REQUEST_ID and incoming.isascii():
            text = incoming.decode()
            if text.isprintable() and " " not in text:
                return text
        return self.next()


class ServerFailureError(Exception):
    """A 500 with a stable code: output_invalid, inference_failed, internal_error."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class PredictRoute:
    """The predict handler's state; `handler()` wraps it as a Litestar ASGI route handler."""

    def __init__(
        self,
        pool: ModelPool,
        metrics: GatewayMetrics,
        audit: AuditWriter,
        inference: Inference,
        *,
        default_stage: str = "prod",
        max_body_bytes: int = 1_048_576,
        retry_after_s: int = 5,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.audit = audit
        self.inference = inference
        self.default_stage = default_stage
        self.max_body_bytes = max_body_bytes
        self.retry_after_s = retry_after_s
        self.ids = RequestIds()
        self.inflight = 0
        self._encode = msgspec.json.Encoder().encode
        metrics.track_inflight(lambda: self.inflight)

    def handler(self) -> ASGIRouteHandler:
        # A mount, not "/predict/{model:str}": litestar 2.25 looks up an ASGI route's path
        # parameters under the HTTP method and fails (KeyError 'POST'); a mount hands us the
        # rest of the path in scope["path"] instead ("/cost_predictor/").
        return asgi("/predict", is_mount=True, copy_scope=False, name="predict")(self.handle)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        model = scope["path"].strip("/")
        content_type = declared = incoming = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
            elif name == b"x-request-id":
                incoming = value
        rid = self.ids.keep_or_new(incoming)
        query = scope["query_string"]
        stage = (_stage(query) if query else "") or self.default_stage
        method: str = scope["method"]  # type: ignore[typeddict-item]
        route: Route | None = None
        batch: InputBatch | None = None
        try:
            if not model or "/" in model:
                raise UnknownModelError(
                    "no such route; use POST /predict/{model}",
                    {"models": self.pool.wanted_models()},
                )
            if method != "POST":
                raise MethodNotAllowedError(method, ("POST",))
            if content_type is None or not content_type.lower().startswith(_JSON):
                raise UnsupportedMediaTypeError(
                    "content-type must be application/json", {"expected": "application/json"}
                )
            stages = self.pool.routes.get(model)
            if stages is None or stage not in stages:
                raise self._missing(model, stage)
            body = await self._read_body(receive, declared)
            # Look up again after the await: a swap may have happened while the body arrived.
            # No await between this lookup and `inflight += 1` (see ModelPool._release).
            route = self.pool.routes.get(model, {}).get(stage)
            if route is None:
                raise self._missing(model, stage)
            batch = route.loaded.schema.decode(body)
            await self._answer(send, route, batch, rid)
            status = 200
        except (RequestError, ServerFailureError) as exc:
            status = await self._send_error(send, exc, rid)
            self._count_error(route, model, stage, exc, status)
        except Exception as exc:  # a bug: still one JSON 500, one metric, one audit record
            log.exception("predict %s failed", model)
            failure = ServerFailureError("internal_error", "internal server error")
            status = await self._send_error(send, failure, rid)
            self._count_error(route, model, stage, exc, status)
        latency = time.perf_counter() - started
        if route is not None:
            route.metrics.duration.observe(latency)
        if self.audit.enabled:
            await self._audit(
                route,
                model=model,
                stage=stage,
                rid=rid,
                status=status,
                latency=latency,
                batch=batch,
            )

    async def _answer(self, send: Send, route: Route, batch: InputBatch, rid: str) -> None:
        lv = route.loaded
        lv.inflight += 1
        self.inflight += 1
        try:
            t = time.perf_counter()
            try:
                if batch.rows <= lv.inline_max_rows:
                    out = lv.predict(batch)
                else:
                    out = await self.inference.in_pool(lv.predict, batch)
            except Exception as exc:
                log.error("%s %s inference failed: %s", lv.model, lv.version, type(exc).__name__)
                raise ServerFailureError(
                    "inference_failed", "the model failed on this input"
                ) from exc
            inference_s = time.perf_counter() - t
            try:
                predictions = lv.schema.predictions(out, batch.rows)
            except ValueError as exc:
                log.error("%s %s output invalid: %s", lv.model, lv.version, exc)
                raise ServerFailureError(
                    "output_invalid", "the model's output failed validation"
                ) from None
        finally:
            lv.inflight -= 1
            self.inflight -= 1
        payload = self._encode(
            PredictResponse(route.model, route.stage, lv.version, rid, predictions)
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    *route.headers,
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-request-id", rid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        m = route.metrics
        m.ok.inc()
        m.inference.observe(inference_s)
        m.rows.observe(batch.rows)

    async def _audit(
        self,
        route: Route | None,
        *,
        model: str,
        stage: str,
        rid: str,
        status: int,
        latency: float,
        batch: InputBatch | None,
    ) -> None:
        lv = route.loaded if route is not None else None
        self.audit.submit(
            (
                time.time(),
                rid,
                model,
                stage,
                lv.version if lv else None,
                lv.digest if lv else None,
                status,
                latency,
                batch.rows if batch else 0,
                batch,
            )
        )
        while self.audit.is_full():  # never drop a record: wait for the writer instead
            await asyncio.sleep(0.001)

    def _missing(self, model: str, stage: str) -> RequestError:
        stages = self.pool.wanted_stages(model)
        if stage in stages:
            return ModelNotReadyError(
                f"{model} has no loaded version for stage {stage!r} yet",
                {"model": model, "stage": stage},
            )
        if stages:
            return UnknownModelError(
                f"model {model!r} has no stage {stage!r}", {"model": model, "stages": stages}
            )
        return UnknownModelError(f"no model {model!r}", {"models": self.pool.wanted_models()})

    async def _read_body(self, receive: Receive, declared: bytes | None) -> bytes:
        limit = self.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message: Any = await receive()
            chunk: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            if not more and not chunks:
                return chunk
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send_error(
        self, send: Send, exc: RequestError | ServerFailureError, rid: str
    ) -> int:
        if isinstance(exc, ServerFailureError):
            status, payload, extra = 500, error_payload(exc.code, exc.message), []
        else:
            status = status_of(exc)
            payload = error_payload(exc.code, exc.message, exc.details)
            extra = error_headers(exc, self.retry_after_s)
        headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", rid.encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        return status

    def _count_error(
        self, route: Route | None, model: str, stage: str, exc: Exception, status: int
    ) -> None:
        if route is not None:
            route.metrics.status(status).inc()
        else:
            # Label values only from names the desired state knows: clients cannot grow
            # the label set by inventing model or stage names.
            stages = self.pool.wanted_stages(model)
            model = model if stages else UNKNOWN
            stage = stage if stage in stages else UNKNOWN
            self.metrics.requests_total.labels(model, stage, "", str(status)).inc()
        kind = getattr(exc, "kind", None) or _ERROR_KIND.get(status)
        if kind is not None:
            self.metrics.validation_errors_total.labels(model, kind).inc()


def _stage(query: bytes) -> str:
    values = parse_qs(query.decode("latin-1")).get("stage")
    return values[-1] if values else ""


def _too_large(size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"request body of {size} bytes is over the limit of {limit}",
        {"bytes": size, "max_body_bytes": limit},
    )
