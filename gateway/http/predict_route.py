"""`POST /predict/{model}` (and V2 infer, /invocations): the hot path.

Everything a request needs is prebuilt when a version is routed to (decoder, metric children,
header pairs). A request is a `PredictCall` taken through the same synchronous steps on both
of its ways in: read the headers (ids, credential) → check (auth, method, media type) → admit
(the route, fail_closed) → decode the body into a batch → predict → check the output and
encode → answer → metrics, shadow offer, audit record.

- The direct lane (`serve_direct`, called from the connection's protocol, gateway/edge/):
  every step runs in the one callback that received the body, and the answer is one socket
  write. Only what must wait — inference on the thread pool, a full audit queue — continues
  in a task.
- The ASGI way (`serve`): what the direct lane leaves (chunked bodies, `Expect:
  100-continue`, pipelined requests, another server); the same steps around `await`s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from litestar.handlers import ASGIRouteHandler, asgi
from litestar.types import Receive, Scope, Send

from gateway.access import Access, Principal
from gateway.edge.direct import DirectExchange
from gateway.errors import (
    AuditUnavailableError,
    InputOutOfRangeError,
    MethodNotAllowedError,
    ModelNotReadyError,
    RequestError,
    RequestTimeoutError,
    UnknownModelError,
    not_started,
    shown,
)
from gateway.http.body_format import BodyFormat, PredictBody, RequestHead
from gateway.http.predict_errors import (
    ServerFailureError,
    count_error,
    error_answer,
    send_answer,
)
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

__all__ = ["AsOfHandler", "PredictCall", "PredictRoute"]

log = logging.getLogger("stageserve.predict")
_RANGE_LOG_S = 60.0
_PREFIX_CUT = len("/predict/")
_NO_STAGES: dict[str, Route] = {}
_perf_counter = time.perf_counter


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


class PredictCall:
    """One predict request in flight: what PredictRoute's steps read and fill in."""

    __slots__ = (
        "batch",
        "client_rid",
        "context",
        "credential",
        "declared",
        "encoding",
        "fmt",
        "header_length",
        "inference_s",
        "media",
        "model",
        "predictions",
        "principal",
        "query",
        "rid",
        "route",
        "stage",
        "started",
        "status",
        "version",
    )

    def __init__(
        self,
        fmt: BodyFormat,
        *,
        model: str,
        stage: str,
        version: str | None,
        started: float,
        query: bytes,
    ) -> None:
        self.fmt = fmt
        self.model = model
        self.stage = stage
        # A version-pinned request (V2 .../versions/{v}/infer): the stage is the one serving it.
        self.version = version
        self.started = started
        self.query = query
        self.rid = ""
        self.client_rid: str | None = None
        self.principal: Principal | None = None
        self.credential: tuple[bytes, bytes] | None = None
        self.declared: bytes | None = None
        self.encoding: bytes | None = None
        self.header_length: bytes | None = None
        self.media: bytes | None = None
        self.route: Route | None = None
        self.batch: InputBatch | None = None
        self.context: Any = None
        self.predictions: list[Any] | None = None
        self.inference_s = 0.0
        self.status = 0


class PredictRoute:
    """The predict handler's state and steps; `handler()` is its Litestar ASGI route handler,
    `serve_direct` its direct-lane entry."""

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
        # Requests with `as_of=` in the query go there (gateway/http/asof_route.py); the
        # direct lane leaves them to the ASGI way (direct_lane.py).
        self.as_of: AsOfHandler | None = None
        self._range_logged: dict[str, float] = {}
        metrics.track_inflight(lambda: self.inflight)

    def handler(self) -> ASGIRouteHandler:
        # A mount, not "/predict/{model:str}": litestar 2.25 looks up an ASGI route's path
        # parameters under the HTTP method and fails (KeyError 'POST'); a mount hands us the
        # rest of the path in scope["path"] instead ("/cost_predictor/").
        return asgi("/predict", is_mount=True, copy_scope=False, name="predict")(self.handle)

    # -- ways in ------------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = _perf_counter()
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

    def predict_direct(self, exchange: DirectExchange) -> None:
        """`POST /predict/{model}` on the direct lane."""
        started = _perf_counter()
        query = exchange.query
        stage = stage_of(query, self.default_stage) if query else self.default_stage
        model = exchange.path[_PREFIX_CUT:].strip("/")
        self.serve_direct(exchange, self.body_format, model=model, stage=stage, started=started)

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
        call = PredictCall(
            body_format or self.body_format,
            model=model,
            stage=stage,
            version=version,
            started=started,
            query=scope["query_string"],
        )
        self._read_headers(call, scope["headers"])
        try:
            self._check(call, scope["method"])  # type: ignore[typeddict-item]
            self._admit(call)
            body = await read_body(receive, call.declared, self.max_body_bytes)
            self._decode(call, body)
            if self.audit.is_full():
                await self._audit_room()
            out = await self._predict(call)
            status, headers, payload = 200, *self._conclude(call, out)
        except Exception as exc:
            status, headers, payload = self._failed(call, exc)
        try:
            await send_answer(send, status, headers, payload)
        finally:
            if status == 200:
                self._answered(call)
            self._record(call)

    def serve_direct(
        self,
        exchange: DirectExchange,
        fmt: BodyFormat,
        *,
        model: str,
        stage: str,
        started: float,
        version: str | None = None,
    ) -> None:
        """`serve` for a request on the direct lane, whose body is all there: answered before
        this returns, unless inference runs on the thread pool or the audit queue is full."""
        call = PredictCall(
            fmt, model=model, stage=stage, version=version, started=started, query=exchange.query
        )
        self._read_headers(call, exchange.headers)
        try:
            self._check(call, exchange.method)
            self._admit(call)
            if exchange.more_body:  # the connection went (or timed out) before the body came
                raise RequestTimeoutError("the request body did not arrive in time")
            self._decode(call, exchange.content)
            batch: Any = call.batch
            lv: Any = call.route.loaded  # type: ignore[union-attr]
            # Inference on the pool, in a shared batch or through the model's limits (its
            # gate), or a full audit queue: continued in a task.
            if (
                batch.rows > lv.inline_max_rows
                or lv.batcher is not None
                or lv.gate is not None
                or self.audit.is_full()
            ):
                exchange.spawn(self._finish_direct(exchange, call))
                return
            out = self._predict_inline(call)
            status, headers, payload = 200, *self._conclude(call, out)
        except Exception as exc:
            status, headers, payload = self._failed(call, exc)
        self._send(exchange, call, status, headers, payload)

    async def _finish_direct(self, exchange: DirectExchange, call: PredictCall) -> None:
        try:
            if self.audit.is_full():
                await self._audit_room()
            out = await self._predict(call)
            status, headers, payload = 200, *self._conclude(call, out)
        except Exception as exc:
            status, headers, payload = self._failed(call, exc)
        self._send(exchange, call, status, headers, payload)

    def _send(
        self,
        exchange: DirectExchange,
        call: PredictCall,
        status: int,
        headers: Any,
        payload: Any,
    ) -> None:
        """The direct lane's answer, then its metrics (a 200) and its audit record."""
        exchange.respond(status, headers, payload)
        if status == 200:
            self._answered(call)
        self._record(call)

    # -- the steps ----------------------------------------------------------------------------

    def _read_headers(self, call: PredictCall, headers: Any) -> None:
        """The headers a predict request reads, and its ids (before anything can fail)."""
        incoming = credential = content_type = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                call.declared = value
            elif name == b"x-request-id":
                incoming = value
            elif name == b"content-encoding":
                call.encoding = value
            elif name == b"inference-header-content-length":
                call.header_length = value
            elif name in (b"authorization", b"x-api-key"):
                credential = (name, value)
        call.rid = self.ids.next()
        if incoming is not None:
            call.client_rid = self.ids.client(incoming)
        call.media = media_type(content_type) if content_type is not None else None
        call.credential = credential

    def _check(self, call: PredictCall, method: str) -> None:
        """Who may ask, and whether the request is one this route reads at all."""
        model = call.model
        if self.access is not None:
            call.principal = principal = self.access.authenticate_one(call.credential)
            call.stage = self._authorize(principal, model, call.stage, call.version)
        if not model or "/" in model:
            raise UnknownModelError(
                f"no such route; use {call.fmt.usage}", {"models": self._known(call.principal)}
            )
        if method != "POST":
            raise MethodNotAllowedError(method, ("POST",))
        call.fmt.check_media_type(call.media)
        if call.version is not None:
            call.stage = self._stage_serving(model, call.version, call.principal)

    def _admit(self, call: PredictCall) -> None:
        """Refuse before reading the body: no such route, or fail_closed while audit fails."""
        stages = self.pool.routes.get(call.model)
        # fail_closed: while audit records cannot be written, nothing is answered.
        if stages is None or call.stage not in stages or self.audit.refusing:
            raise self._refused(call.model, call.stage, call.principal)

    def _decode(self, call: PredictCall, body: bytes) -> None:
        """The body (decompressed) into the batch of the version that answers."""
        if call.encoding is not None:
            body = decode_content(body, call.encoding, self.max_body_bytes)
        # Looked up again: on the ASGI way a swap may have happened while the body arrived.
        # No await between this lookup and `inflight += 1` (see ModelPool._release).
        route = self.pool.routes.get(call.model, _NO_STAGES).get(call.stage)
        if route is None:
            raise self._missing(call.model, call.stage, call.principal)
        if call.version is not None and route.loaded.version != call.version:
            served = route.loaded.version
            raise UnknownModelError(
                f"{call.model} {call.version} is no longer served",
                {"model": call.model, "served": served},
            )
        call.route = route
        head = RequestHead(call.media, call.header_length, call.query)
        call.batch, call.context = call.fmt.decode(route, body, head)

    def _predict_inline(self, call: PredictCall) -> Any:
        route: Any = call.route
        lv = route.loaded
        lv.inflight += 1
        self.inflight += 1
        t = _perf_counter()
        try:
            out = lv.predict(call.batch)
        except Exception as exc:
            raise self._inference_failed(lv, exc) from exc
        finally:
            lv.inflight -= 1
            self.inflight -= 1
        call.inference_s = _perf_counter() - t
        return out

    async def _predict(self, call: PredictCall) -> Any:
        """Batched, inline or on the pool, admitted or refused by the model's limits:
        gateway/pool/inference.py decides (every route calls it)."""
        route: Any = call.route
        batch: Any = call.batch
        lv = route.loaded
        lv.inflight += 1
        self.inflight += 1
        try:
            out, call.inference_s = await self.inference.run(lv, batch)
        except RequestError:
            raise  # refused by the model's limits (503/504), not a model failure
        except Exception as exc:
            raise self._inference_failed(lv, exc) from exc
        finally:
            lv.inflight -= 1
            self.inflight -= 1
        return out

    def _conclude(self, call: PredictCall, out: Any) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """Check the output and encode the answer: (headers, body)."""
        route: Any = call.route
        lv = route.loaded
        try:
            predictions = lv.schema.predictions(out, call.batch.rows)  # type: ignore[union-attr]
        except NonFiniteOutputError as exc:
            self._log_out_of_range(lv.model, lv.version, exc.row)
            raise InputOutOfRangeError(exc.row) from None
        except ValueError as exc:
            log.error("%s %s output invalid: %s", lv.model, lv.version, exc)
            raise ServerFailureError(
                "output_invalid", "the model's output failed validation"
            ) from None
        call.predictions = predictions
        payload, content_headers = call.fmt.encode(route, call.rid, predictions, call.context)
        headers = [*content_headers, *route.version_headers, (b"x-request-id", call.rid.encode())]
        if call.client_rid:
            headers.append((b"x-client-request-id", call.client_rid.encode()))
        return headers, payload

    async def answer_past(
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
    ) -> list[Any]:
        """Predict with a version outside the route table (as-of requests, asof_route.py),
        check, encode and send the answer, count it (never offered to shadow traffic);
        returns the predictions (for its audit record). Raises as the steps do."""
        call = PredictCall(
            fmt, model=route.model, stage=route.stage, version=None, started=0.0, query=b""
        )
        call.rid, call.client_rid, call.principal = rid, client_rid, principal
        call.route, call.batch, call.context = route, batch, context
        out = await self._predict(call)
        headers, payload = self._conclude(call, out)
        await send_answer(send, 200, headers, payload)
        self._answered(call, shadowed=False)
        return call.predictions  # type: ignore[return-value]

    def _answered(self, call: PredictCall, *, shadowed: bool = True) -> None:
        """After a 200 is sent: its metrics, and the shadow's copy (an O(1) enqueue)."""
        call.status = 200
        route: Any = call.route
        batch: Any = call.batch
        m = route.metrics
        m.ok.inc()
        m.inference.observe(call.inference_s)
        m.rows.observe(batch.rows)
        if self.shadow is not None and shadowed:
            name = call.principal.name if call.principal is not None else None
            self.shadow.offer(
                route,
                batch,
                call.predictions,  # type: ignore[arg-type]
                call.inference_s,
                call.rid,
                principal=name,
                client_rid=call.client_rid,
            )

    def _failed(
        self, call: PredictCall, exc: Exception
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The refusal (or a bug's one 500) to answer, counted."""
        failure: RequestError | ServerFailureError
        if isinstance(exc, RequestError | ServerFailureError):
            failure = exc
        else:  # a bug: still one JSON 500, one metric, one audit record
            log.error("predict %s failed", call.model, exc_info=exc)
            failure = ServerFailureError("internal_error", "internal server error")
        status, headers, payload = error_answer(
            failure,
            call.rid,
            self.retry_after_s,
            fmt=call.fmt,
            route=call.route,
            client_rid=call.client_rid,
        )
        count_error(
            self.metrics,
            self.pool,
            call.route,
            model=call.model,
            stage=call.stage,
            exc=exc,
            status=status,
        )
        call.status = status
        return status, headers, payload

    def _record(self, call: PredictCall) -> None:
        """The latency metric and the audit record every request leaves, answered or not."""
        latency = _perf_counter() - call.started
        route = call.route
        if route is not None:
            route.metrics.duration.observe(latency)
        principal = call.principal
        if principal is not None:
            known = call.model if route is not None or call.model in self.pool.routes else UNKNOWN
            self.metrics.client_request(principal.client, known)
        if self.audit.enabled:
            lv = route.loaded if route is not None else None
            batch = call.batch
            self.audit.submit(
                (
                    time.time(),
                    call.rid,
                    call.model,
                    call.stage,
                    lv.version if lv else None,
                    lv.digest if lv else None,
                    call.status,
                    latency,
                    batch.rows if batch else 0,
                    batch,
                    principal.name if principal is not None else None,
                    call.client_rid,
                    call.predictions if call.status == 200 else None,
                )
            )

    async def _audit_room(self) -> None:
        """Past `audit_queue_max` records not yet written, requests wait for the writer
        before they are answered (never a record dropped while the writer is healthy)."""
        while self.audit.is_full():
            await asyncio.sleep(0.001)

    # -- refusals -----------------------------------------------------------------------------

    def _inference_failed(self, lv: Any, exc: Exception) -> ServerFailureError:
        log.error("%s %s inference failed: %s", lv.model, lv.version, type(exc).__name__)
        return ServerFailureError("inference_failed", "the model failed on this input")

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

    def _authorize(self, principal: Principal, model: str, stage: str, version: str | None) -> str:
        """The stage to check (a pinned version's); 404 (as if absent) for a model the
        principal may not see at all, 403 for a stage it may not predict with."""
        access: Any = self.access
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
