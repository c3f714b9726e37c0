"""`POST /predict/{model}`: the hot path, as a raw ASGI handler inside the Litestar app.

Everything a request needs is prebuilt when a version is routed to (decoder, metric children,
header pairs), so a request does: read body → decode into Structs → predict → validate output
→ encode → send, then three metric updates and one queue put for the audit record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send

from gateway.access import Access, Principal
from gateway.errors import (
    AuditUnavailableError,
    InputOutOfRangeError,
    MethodNotAllowedError,
    ModelNotReadyError,
    RequestError,
    UnknownModelError,
    UnsupportedMediaTypeError,
    not_started,
    shown,
)
from gateway.http.errors import error_payload
from gateway.http.predict_errors import ServerFailureError, count_error, send_error
from gateway.http.request_ids import RequestIds
from gateway.http.request_io import decode_content, media_type, read_body, stage_of
from gateway.pool.inference import Inference
from gateway.pool.model_pool import ModelPool
from gateway.pool.route_table import Route
from gateway.schema.outputs import NonFiniteOutputError
from gateway.schema.request_schema import InputBatch
from gateway.shadow.worker import Shadow
from gateway.telemetry.audit import AuditWriter
from gateway.telemetry.metrics import UNKNOWN, GatewayMetrics

__all__ = [
    "AsOfHandler",
    "BodyFormat",
    "Headers",
    "PredictBody",
    "PredictResponse",
    "PredictRoute",
    "RequestHead",
]

log = logging.getLogger("stageserve.predict")
_JSON = b"application/json"
_RANGE_LOG_S = 60.0


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


Headers = Sequence[tuple[bytes, bytes]]
_JSON_HEADERS: Headers = ((b"content-type", _JSON),)


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


class AsOfHandler(Protocol):
    """Serves predict requests that ask `as_of=` (a separate path, see asof_route.py)."""

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        model: str,
        started: float,
        body_format: BodyFormat | None = None,
        version: str | None = None,
    ) -> None: ...


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
        shadow: Shadow | None = None,
        access: Access | None = None,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.audit = audit
        self.inference = inference
        self.default_stage = default_stage
        self.max_body_bytes = max_body_bytes
        self.retry_after_s = retry_after_s
        # None unless some stage is shadowed: then the only cost here is one `is None` test.
        self.shadow = shadow
        # None while auth is off: then the only cost here is one `is None` test per request.
        self.access = access
        self.ids = RequestIds()
        self.inflight = 0
        self.body_format: BodyFormat = PredictBody()
        # Requests with `as_of=` in the query go there (gateway/http/asof_route.py).
        self.as_of: AsOfHandler | None = None
        self._range_logged: dict[str, float] = {}
        metrics.track_inflight(lambda: self.inflight)

    def handler(self) -> ASGIRouteHandler:
        # A mount, not "/predict/{model:str}": litestar 2.25 looks up an ASGI route's path
        # parameters under the HTTP method and fails (KeyError 'POST'); a mount hands us the
        # rest of the path in scope["path"] instead ("/cost_predictor/").
        return asgi("/predict", is_mount=True, copy_scope=False, name="predict")(self.handle)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        query = scope["query_string"]
        if query and self.as_of is not None and b"as_of=" in query:
            await self.as_of.serve(
                scope, receive, send, model=scope["path"].strip("/"), started=started
            )
            return
        stage = stage_of(query, self.default_stage)
        await self.serve(
            scope, receive, send, model=scope["path"].strip("/"), stage=stage, started=started
        )

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        model: str,
        stage: str,
        started: float,
        body_format: BodyFormat | None = None,
        version: str | None = None,
    ) -> None:
        """Answer one predict request for (model, stage), in `body_format` (default: ours).
        With `version` (a version-pinned request) the stage is the one serving that version
        ("" when none does: refused, and still counted and audited like every request)."""
        fmt = body_format or self.body_format
        content_type = declared = incoming = encoding = header_length = credential = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
            elif name == b"x-request-id":
                incoming = value
            elif name == b"content-encoding":
                encoding = value
            elif name == b"inference-header-content-length":
                header_length = value
            elif name in (b"authorization", b"x-api-key"):
                credential = (name, value)
        rid = self.ids.next()
        client_rid = self.ids.client(incoming) if incoming is not None else None
        method: str = scope["method"]  # type: ignore[typeddict-item]
        route: Route | None = None
        batch: InputBatch | None = None
        predictions: list[Any] | None = None
        principal: Principal | None = None
        try:
            if self.access is not None:
                principal = self.access.authenticate_one(credential)
                stage = self._authorize(self.access, principal, model, stage, version)
            if not model or "/" in model:
                raise UnknownModelError(
                    f"no such route; use {fmt.usage}", {"models": self._known(principal)}
                )
            if method != "POST":
                raise MethodNotAllowedError(method, ("POST",))
            media = media_type(content_type)
            fmt.check_media_type(media)
            if version is not None:
                stage = self._stage_serving(model, version, principal)
            route, body = await self._admit(
                receive,
                model,
                stage,
                version=version,
                declared=declared,
                encoding=encoding,
                principal=principal,
            )
            head = RequestHead(media, header_length, scope["query_string"])
            batch, context = fmt.decode(route, body, head)
            predictions = await self._answer(
                send,
                route,
                batch,
                rid=rid,
                client_rid=client_rid,
                fmt=fmt,
                context=context,
                principal=principal,
            )
            status = 200
        except (RequestError, ServerFailureError) as exc:
            status = await send_error(
                send, exc, rid, self.retry_after_s, fmt=fmt, route=route, client_rid=client_rid
            )
            count_error(
                self.metrics, self.pool, route, model=model, stage=stage, exc=exc, status=status
            )
        except Exception as exc:  # a bug: still one JSON 500, one metric, one audit record
            log.exception("predict %s failed", model)
            failure = ServerFailureError("internal_error", "internal server error")
            status = await send_error(
                send, failure, rid, self.retry_after_s, fmt=fmt, route=route, client_rid=client_rid
            )
            count_error(
                self.metrics, self.pool, route, model=model, stage=stage, exc=exc, status=status
            )
        await self._record(
            started,
            rid,
            model,
            stage,
            route=route,
            status=status,
            batch=batch,
            principal=principal,
            client_rid=client_rid,
            predictions=predictions,
        )

    async def _admit(
        self,
        receive: Receive,
        model: str,
        stage: str,
        *,
        version: str | None,
        declared: bytes | None,
        encoding: bytes | None,
        principal: Principal | None,
    ) -> tuple[Route, bytes]:
        """The route that answers, and the body (decompressed), or the refusal."""
        stages = self.pool.routes.get(model)
        # fail_closed: while audit records cannot be written, nothing is answered.
        if stages is None or stage not in stages or self.audit.refusing:
            raise self._refused(model, stage, principal)
        body = await read_body(receive, declared, self.max_body_bytes)
        if encoding is not None:
            body = decode_content(body, encoding, self.max_body_bytes)
        # Look up again after the await: a swap may have happened while the body arrived.
        # No await between this lookup and `inflight += 1` (see ModelPool._release).
        route = self.pool.routes.get(model, {}).get(stage)
        if route is None:
            raise self._missing(model, stage, principal)
        if version is not None and route.loaded.version != version:
            served = route.loaded.version
            raise UnknownModelError(
                f"{model} {version} is no longer served", {"model": model, "served": served}
            )
        return route, body

    async def _record(
        self,
        started: float,
        rid: str,
        model: str,
        stage: str,
        *,
        route: Route | None,
        status: int,
        batch: InputBatch | None,
        principal: Principal | None,
        client_rid: str | None,
        predictions: list[Any] | None,
    ) -> None:
        """The latency metric and the audit record every request leaves, answered or not."""
        latency = time.perf_counter() - started
        if route is not None:
            route.metrics.duration.observe(latency)
        if principal is not None:
            known = model if route is not None or model in self.pool.routes else UNKNOWN
            self.metrics.client_request(principal.client, known)
        if self.audit.enabled:
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
                    principal.name if principal is not None else None,
                    client_rid,
                    predictions,
                )
            )
            # Never drop a record: past the limit, wait for the writer. A plain call and a
            # rare await, not a coroutine per request (~10 µs under load).
            while self.audit.is_full():
                await asyncio.sleep(0.001)

    async def _answer(
        self,
        send: Send,
        route: Route,
        batch: InputBatch,
        *,
        rid: str,
        client_rid: str | None,
        fmt: BodyFormat,
        context: Any,
        principal: Principal | None,
        shadowed: bool = True,
    ) -> list[Any]:
        """Predict, validate, send the answer; returns the predictions (for the audit).
        `shadowed=False` (as-of requests): never offered to shadow traffic."""
        lv = route.loaded
        lv.inflight += 1
        self.inflight += 1
        try:
            try:
                # Batched, inline or on the pool, admitted or refused by the model's limits:
                # gateway/pool/inference.py decides (every route calls it).
                out, inference_s = await self.inference.run(lv, batch)
            except RequestError:
                raise  # refused by the model's limits (503/504), not a model failure
            except Exception as exc:
                log.error("%s %s inference failed: %s", lv.model, lv.version, type(exc).__name__)
                raise ServerFailureError(
                    "inference_failed", "the model failed on this input"
                ) from exc
            try:
                predictions = lv.schema.predictions(out, batch.rows)
            except NonFiniteOutputError as exc:
                self._log_out_of_range(lv.model, lv.version, exc.row)
                raise InputOutOfRangeError(exc.row) from None
            except ValueError as exc:
                log.error("%s %s output invalid: %s", lv.model, lv.version, exc)
                raise ServerFailureError(
                    "output_invalid", "the model's output failed validation"
                ) from None
        finally:
            lv.inflight -= 1
            self.inflight -= 1
        payload, content_headers = fmt.encode(route, rid, predictions, context)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    *content_headers,
                    *route.version_headers,
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-request-id", rid.encode()),
                    *(((b"x-client-request-id", client_rid.encode()),) if client_rid else ()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        m = route.metrics
        m.ok.inc()
        m.inference.observe(inference_s)
        m.rows.observe(batch.rows)
        if self.shadow is not None and shadowed:  # after the response: O(1) (see shadow.py)
            name = principal.name if principal is not None else None
            self.shadow.offer(
                route, batch, predictions, inference_s, rid, principal=name, client_rid=client_rid
            )
        return predictions

    def _log_out_of_range(self, model: str, version: str, row: int) -> None:
        # The client's input, not a server fault: info, at most once a minute per model.
        now = time.monotonic()
        if now - self._range_logged.get(model, -_RANGE_LOG_S) >= _RANGE_LOG_S:
            self._range_logged[model] = now
            log.info(
                "%s %s: non-finite output for an input out of range (row %d); answered 422 "
                "(logged at most once a minute)",
                model,
                version,
                row,
            )

    def _authorize(
        self, access: Access, principal: Principal, model: str, stage: str, version: str | None
    ) -> str:
        """The stage to check (a pinned version's); 404 (as if absent) for a model the
        principal may not see at all, 403 for a stage it may not predict with."""
        if not model or "/" in model:
            return stage
        if version is not None and access.policy.sees(principal, model):
            stage = self._stage_serving(model, version, principal)
        access.check(principal, "predict", model, stage, self.pool.wanted_models)
        return stage

    def _known(self, principal: Principal | None) -> dict[str, list[str]]:
        """The models (and stages) a refusal may name: those the principal may see."""
        models = self.pool.wanted_models()
        if self.access is None or principal is None:
            return models
        return self.access.visible(principal, models)

    def _stage_serving(self, model: str, version: str, principal: Principal | None) -> str:
        if self.pool.desired is None:
            raise not_started()
        for stage, route in sorted(self.pool.routes.get(model, {}).items()):
            if route.loaded.version == version:
                return stage
        if not self.pool.wanted_stages(model):
            raise UnknownModelError(
                f"no model {shown(model)!r}", {"models": self._known(principal)}
            )
        served = sorted({r.loaded.version for r in self.pool.routes.get(model, {}).values()})
        raise UnknownModelError(
            f"no stage of {model!r} serves {shown(version)}", {"model": model, "served": served}
        )

    def _refused(self, model: str, stage: str, principal: Principal | None) -> RequestError:
        stages = self.pool.routes.get(model)
        if stages is not None and stage in stages:
            return AuditUnavailableError(
                "audit records cannot be written right now, and nothing is answered unrecorded",
                {"retry": "when the audit backlog is written (see /models audit)"},
            )
        return self._missing(model, stage, principal)

    def _missing(self, model: str, stage: str, principal: Principal | None) -> RequestError:
        if self.pool.desired is None:
            return not_started()
        stages = self.pool.wanted_stages(model)
        if stage in stages:
            return ModelNotReadyError(
                f"{model} has no loaded version for stage {stage!r} yet",
                {"model": model, "stage": stage},
            )
        if stages:
            return UnknownModelError(
                f"model {model!r} has no stage {shown(stage)!r}", {"model": model, "stages": stages}
            )
        return UnknownModelError(f"no model {shown(model)!r}", {"models": self._known(principal)})
