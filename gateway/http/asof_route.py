"""`?as_of=T` on every predict route: the answer the version that served (or was assigned to)
the stage at T gives now, stamped with the instant and the basis, audited as an as-of request.

A separate path from live predictions: the predict, V2 and MLflow handlers hand a request over
when its query has `as_of=` (one substring test; a request without a query pays nothing), and
nothing here touches the live route table beyond reading it. Validation, inference, encoding
and error bodies are the live path's own (`PredictRoute.answer_past`, the body formats).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
from litestar.types import Receive, Scope, Send

from gateway.access import Principal
from gateway.errors import (
    InputValidationError,
    MethodNotAllowedError,
    RequestError,
    UnknownModelError,
    shown,
)
from gateway.history.asof.metrics import AsOfMetrics, AsOfRouteMetrics
from gateway.history.asof.query import AsOf, parse_as_of
from gateway.history.asof.resolve import AsOfResolver, PastVersion
from gateway.http.body_format import BodyFormat, Headers, PredictBody, RequestHead
from gateway.http.predict_errors import ServerFailureError, send_error
from gateway.http.predict_route import PredictRoute
from gateway.http.request_io import decode_content, media_type, read_body
from gateway.http.v2_protocol import V2Request, encode_v2_response
from gateway.http.v2_route import V2Body
from gateway.pool.route_table import Route
from gateway.schema.request_schema import InputBatch
from gateway.telemetry.metrics import UNKNOWN

__all__ = ["AsOfPredict", "AsOfPredictResponse"]

log = logging.getLogger("stageserve.asof")
_JSON_HEADERS: Headers = ((b"content-type", b"application/json"),)


class AsOfPredictResponse(msgspec.Struct, frozen=True):
    """`/predict`'s response, stamped: the instant asked about, the basis, and since when
    that version served (basis served) or was assigned (basis assigned)."""

    model: str
    stage: str
    version: str
    request_id: str
    predictions: list[Any]
    as_of: str
    basis: str
    since: str | None


class _Stamped:
    """A body format whose answers carry the as-of stamp (V2: in `parameters`; MLflow's
    body has no room for it: headers only)."""

    def __init__(self, inner: BodyFormat, as_of: AsOf, past: PastVersion) -> None:
        self.inner = inner
        self.usage = inner.usage
        self.as_of = as_of
        self.past = past
        self._encode = msgspec.json.Encoder().encode

    def check_media_type(self, media_type: bytes | None) -> None:
        self.inner.check_media_type(media_type)

    def decode(self, route: Route, body: bytes, head: RequestHead) -> tuple[InputBatch, Any]:
        return self.inner.decode(route, body, head)

    def error_body(self, code: str, message: str, details: dict[str, Any]) -> bytes:
        return self.inner.error_body(code, message, details)

    def encode(
        self, route: Route, rid: str, predictions: list[Any], context: Any
    ) -> tuple[bytes, Headers]:
        as_of, basis, since = self.as_of.text, self.as_of.basis, self.past.since
        if isinstance(self.inner, PredictBody):
            response = AsOfPredictResponse(
                route.model,
                route.stage,
                route.loaded.version,
                rid,
                predictions,
                as_of,
                basis,
                since,
            )
            return self._encode(response), _JSON_HEADERS
        if isinstance(self.inner, V2Body):
            request: V2Request = context
            lv = route.loaded
            answer = encode_v2_response(
                lv.schema,
                model=route.model,
                version=lv.version,
                request_id=request.id or rid,
                stage=route.stage,
                digest=lv.digest,
                predictions=predictions,
                request=request,
                parameters={"as_of": as_of, "basis": basis, "since": since},
            )
            if answer.header_length is None:
                return answer.body, _JSON_HEADERS
            return answer.body, (
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(answer.header_length).encode()),
            )
        return self.inner.encode(route, rid, predictions, context)


class AsOfPredict:
    """Serves as-of requests of every predict route (`PredictRoute.as_of` points here)."""

    def __init__(self, predict: PredictRoute, resolver: AsOfResolver, metrics: AsOfMetrics):
        self.predict = predict
        self.resolver = resolver
        self.metrics = metrics

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
    ) -> None:
        p = self.predict
        fmt: BodyFormat = body_format or p.body_format
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
        rid = p.ids.next()
        client_rid = p.ids.client(incoming) if incoming is not None else None
        method: str = scope["method"]  # type: ignore[typeddict-item]
        query: bytes = scope["query_string"]
        route: Route | None = None
        batch: InputBatch | None = None
        predictions: list[Any] | None = None
        principal: Principal | None = None
        as_of: AsOf | None = None
        stage = ""
        try:
            as_of, named = parse_as_of(query)
            stage = p.default_stage if named is None else named
            principal, stage = self._admit(
                model, stage, version=version, method=method, fmt=fmt, credential=credential
            )
            head = RequestHead(media_type(content_type), header_length, query)
            fmt.check_media_type(head.media_type)
            past = await self.resolver.resolve(model, stage, as_of)
            fmt = _Stamped(fmt, as_of, past)
            body = await read_body(receive, declared, p.max_body_bytes)
            if encoding is not None:
                body = decode_content(body, encoding, p.max_body_bytes)
            lv = await self.resolver.acquire(past)
            # From here to the pin in answer_past nothing is awaited: lv cannot be released.
            route = Route(
                model, stage, lv, AsOfRouteMetrics(self.metrics, model, as_of.basis, lv.version)
            )
            route.version_headers = (
                *route.version_headers,
                (b"x-model-as-of", as_of.text.encode()),
                (b"x-model-basis", as_of.basis.encode()),
            )
            batch, context = fmt.decode(route, body, head)
            predictions = await p.answer_past(
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
                send, exc, rid, p.retry_after_s, fmt=fmt, route=route, client_rid=client_rid
            )
        except Exception:  # a bug: still one JSON 500, one metric, one audit record
            log.exception("as-of predict %s failed", model)
            failure = ServerFailureError("internal_error", "internal server error")
            status = await send_error(
                send, failure, rid, p.retry_after_s, fmt=fmt, route=route, client_rid=client_rid
            )
        self._record(
            started, rid, model, stage, route=route, status=status, batch=batch,
            predictions=predictions, principal=principal, client_rid=client_rid, as_of=as_of,
            query=query,
        )  # fmt: skip

    def _admit(
        self,
        model: str,
        stage: str,
        *,
        version: str | None,
        method: str,
        fmt: BodyFormat,
        credential: tuple[bytes, bytes] | None,
    ) -> tuple[Principal | None, str]:
        """Who asks, and the stage they may ask about; the refusals of the live path."""
        p = self.predict
        if version is not None:
            raise InputValidationError(
                "query.as_of", "a version-pinned request cannot also ask as_of", "shape"
            )
        principal = None
        if p.access is not None:
            principal = p.access.authenticate_one(credential)
            stage = p._authorize(principal, model, stage, None)
        if not model or "/" in model:
            raise UnknownModelError(f"no such route; use {fmt.usage}", {})
        if method != "POST":
            raise MethodNotAllowedError(method, ("POST",))
        return principal, stage

    def _record(
        self,
        started: float,
        rid: str,
        model: str,
        stage: str,
        *,
        route: Route | None,
        status: int,
        batch: InputBatch | None,
        predictions: list[Any] | None,
        principal: Principal | None,
        client_rid: str | None,
        as_of: AsOf | None,
        query: bytes,
    ) -> None:
        latency = time.perf_counter() - started
        basis = as_of.basis if as_of is not None else "served"
        if route is not None:
            route.metrics.duration.observe(latency)
            if status != 200:
                route.metrics.status(status).inc()
        else:
            known = model if model in self.predict.pool.wanted_models() else UNKNOWN
            self.metrics.requests_total.labels(known, basis, str(status)).inc()
        audit = self.predict.audit
        if not audit.enabled:
            return
        lv = route.loaded if route is not None else None
        entry = (
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
        instant = as_of.text if as_of is not None else shown(_raw_as_of(query))
        audit.submit_as_of(entry, instant, basis)


def _raw_as_of(query: bytes) -> str:
    from urllib.parse import parse_qs

    return (parse_qs(query.decode("latin-1")).get("as_of") or [""])[-1]
