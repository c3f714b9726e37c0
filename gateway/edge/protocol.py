"""uvicorn's httptools protocol with bounds on what one connection may hold, and for how long.

httptools buffers a header block for as long as it keeps coming, and uvicorn times out only
idle keep-alive connections: a client that sends an endless header, or headers or a body that
never finish, or nothing at all, holds memory and a descriptor forever. This subclass adds:

- a byte cap on the request line + headers and a cap on the number of header fields (431);
- a deadline for the headers (from the connection's open or the request's first byte) and
  one for the body (from the end of the headers): 408, or a plain close when nothing came;
- a connection cap: a connection over it gets 503 + Retry-After on its request (then the
  connection closes), one far over it is closed at once (the descriptor table is finite).

Deadlines are checked by `sweep`, once a second, from the server's own tick (drain.py), so a
request pays only a clock read at its start, end of headers and end of body: no timer per
request. The limits are class attributes set by `bounded_protocol` (uvicorn builds one
protocol object per connection from the class it is given).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.edge.direct import DirectExchange, DirectLane
from gateway.edge.limits import EdgeLimits

__all__ = [
    "REFUSAL_REASONS",
    "BoundedHttpToolsProtocol",
    "EdgeCollector",
    "EdgeCounters",
    "bounded_protocol",
    "overloaded_app",
    "sweep",
]

log = logging.getLogger("stageserve.edge")

# stageserve_http_refused_total{reason}
REFUSAL_REASONS = (
    "header_too_large",
    "too_many_headers",
    "header_timeout",
    "body_timeout",
    "evicted",
    "overloaded",
    "over_connection_limit",
)
# An overflow connection (already over max_connections) gets this long for its headers.
_OVERFLOW_HEADER_TIMEOUT_S = 2.0
_INF = math.inf
# The base class's methods called directly on the per-request path: a `super()` call costs
# an extra object and lookup each time.
_base_data_received = HttpToolsProtocol.data_received
_base_on_headers_complete = HttpToolsProtocol.on_headers_complete
_base_on_message_complete = HttpToolsProtocol.on_message_complete
_base_on_body = HttpToolsProtocol.on_body
_encode = msgspec.json.encode
_parse_url = httptools.parse_url


class EdgeCounters:
    """Refusals by reason: plain ints bumped on the (rare) refusal path, read at scrape time."""

    def __init__(self) -> None:
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSAL_REASONS, 0))


class EdgeCollector(Collector):
    """`stageserve_http_connections` and `stageserve_http_refused_total{reason}`."""

    def __init__(self, counters: EdgeCounters, connections: Callable[[], int]) -> None:
        self.counters = counters
        self.connections = connections

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily(
            "stageserve_http_connections", "Open client connections", value=self.connections()
        )
        refused = CounterMetricFamily(
            "stageserve_http_refused",
            "Requests and connections refused at the HTTP edge, by reason",
            labels=["reason"],
        )
        for reason, n in self.counters.refused.items():
            refused.add_metric([reason], n)
        yield refused


class _RefusedError(Exception):
    """Raised from a parser callback to stop parsing; uvicorn turns any callback error into
    `send_400_response`, which sends `refusal` instead (see there)."""


def _error_body(code: str, message: str) -> bytes:
    return _encode({"error": {"code": code, "message": message, "details": {}}})


def _headers(body: bytes, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]


def _raw_response(status: int, code: str, message: str) -> bytes:
    """A whole response written straight to the transport (no app involved)."""
    body = _error_body(code, message)
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode())]
    lines += [name + b": " + value for name, value in _headers(body, [])]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def overloaded_app(retry_after_s: int, counters: EdgeCounters) -> Any:
    """The ASGI app an overflow connection's request is given: 503 + Retry-After."""
    body = _error_body("overloaded", "the server has too many connections; retry later")
    headers = _headers(body, [(b"retry-after", str(retry_after_s).encode())])

    async def app(scope: Any, receive: Any, send: Any) -> None:
        del receive
        counters.refused["overloaded"] += 1
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[EdgeLimits] = EdgeLimits()
    counters: ClassVar[EdgeCounters] = EdgeCounters()
    overloaded: ClassVar[Any] = staticmethod(overloaded_app(5, counters))
    # The requests answered from the protocol itself (direct.py); None: every request is ASGI.
    lane: ClassVar[DirectLane | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.limits
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        self._header_timeout_s = limits.header_timeout_s
        self._body_timeout_s = limits.body_timeout_s
        # When `sweep` times this connection out (monotonic seconds; inf: no deadline, i.e.
        # the app is answering, or the connection is idle under uvicorn's keep-alive timer).
        self.deadline = math.inf
        self._in_headers = True  # reading a request line and headers (or waiting for one)
        self._header_received = 0  # bytes seen while reading this header block
        self._refusal: tuple[int, str, str] | None = None

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = self.limits
        timeout_s = self._header_timeout_s
        if len(self.connections) > limits.max_connections:
            open_now = self._make_room()
            if open_now > limits.max_connections + limits.overflow:
                self.counters.refused["over_connection_limit"] += 1
                transport.close()
                return
            if open_now > limits.max_connections:
                # Served by a tiny app that answers 503 (uvicorn reads `self.app` per request).
                self.app = self.overloaded
                timeout_s = min(timeout_s, _OVERFLOW_HEADER_TIMEOUT_S)
        self.deadline = self.loop.time() + timeout_s

    def _make_room(self) -> int:
        """Over the cap: close the connection that has waited longest for a request that is
        still not there (slow or silent first; an idle keep-alive one last), so that idle
        sockets can never lock new clients out. Returns the connections left open."""
        open_now = 0
        victim: BoundedHttpToolsProtocol | None = None
        for conn in self.connections:
            if conn.transport is None or conn.transport.is_closing():
                continue
            open_now += 1
            if (
                conn is not self
                and isinstance(conn, BoundedHttpToolsProtocol)
                and conn.waiting_for_request()
                and (victim is None or conn.deadline < victim.deadline)
            ):
                victim = conn
        if victim is not None and open_now > self.limits.max_connections:
            victim.close_waiting("evicted")
            open_now -= 1
        return open_now

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        super().connection_lost(exc)
        if type(cycle) is DirectExchange:
            # Its body never came (timed out, or the client left): the handler still records
            # the request (its answer goes nowhere).
            cycle.run()

    def waiting_for_request(self) -> bool:
        """Nothing being answered, and no request under way past its headers."""
        cycle = self.cycle
        return self._in_headers and (cycle is None or cycle.response_complete)

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_received += len(data)
            if self.deadline == _INF:  # a keep-alive connection's next request: from now
                self.deadline = self.loop.time() + self._header_timeout_s
        _base_data_received(self, data)
        # Still inside a header block that is not complete (a complete one reset the count):
        # httptools keeps buffering it, so it is bounded here, per read.
        if self._header_received and self._in_headers and not self.transport.is_closing():
            if self._header_received > self._max_header_bytes:
                self._refuse(431, "header_too_large", self._too_large_message())
            elif self.headers is not None and len(self.headers) > self._max_headers:
                self._refuse(431, "too_many_headers", self._too_many_message())

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for any parser error, including a `_RefusedError` from a callback.
        refusal = self._refusal
        if refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(*refusal)

    def _refuse(self, status: int, reason: str, message: str) -> None:
        self.counters.refused[reason] += 1
        code = "headers_too_large" if status == 431 else "request_timeout"
        self.transport.write(_raw_response(status, code, message))
        self.transport.close()
        self.deadline = math.inf

    def _too_large_message(self) -> str:
        return f"the request line and headers are over the limit of {self._max_header_bytes} bytes"

    def _too_many_message(self) -> str:
        return f"more than {self._max_headers} header fields"

    # -- parser callbacks -----------------------------------------------------------------

    # Headers are counted per read in data_received and once more here, not in `on_header`:
    # a Python override called for every header field cost more than all the rest together.

    def on_headers_complete(self) -> None:
        if len(self.headers) > self._max_headers:
            self._refusal = (431, "too_many_headers", self._too_many_message())
            raise _RefusedError
        # A block that arrived within one read was never seen incomplete: measure it exactly
        # (only worth it when the reads were bigger than the cap).
        if self._header_received > self._max_header_bytes and self._header_bytes() > (
            self._max_header_bytes
        ):
            self._refusal = (431, "header_too_large", self._too_large_message())
            raise _RefusedError
        self._in_headers = False
        self._header_received = 0
        self.deadline = self.loop.time() + self._body_timeout_s
        if self.lane is not None and self._take_direct(self.lane):
            return
        _base_on_headers_complete(self)
        if self.pipeline and self.pipeline[0][0] is self.cycle:
            # Queued behind the request being answered: uvicorn stopped reading for now.
            self.deadline = math.inf

    def on_message_complete(self) -> None:
        _base_on_message_complete(self)
        self._in_headers = True
        self.deadline = math.inf
        cycle = self.cycle
        if type(cycle) is DirectExchange:
            cycle.run()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is DirectExchange:
            if not cycle.response_complete:
                cycle.add_body(body)
            return
        _base_on_body(self, body)

    def _take_direct(self, lane: DirectLane) -> bool:
        """At the end of the headers: answer this request on the direct lane (direct.py) when
        the lane wants it and nothing about it needs uvicorn's ASGI cycle."""
        cycle = self.cycle
        if (
            (cycle is not None and not cycle.response_complete)  # pipelined behind another
            or self.expect_100_continue
            or self.app is self.overloaded
            or self.root_path
        ):
            return False
        parser = self.parser
        if parser.should_upgrade():
            return False
        parsed = _parse_url(self.url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            return False  # uvicorn's unquoting and its corner cases: the ASGI way
        query: bytes = parsed.query or b""
        method = parser.get_method().decode("ascii")
        handler = lane.handler_for(method, path, query)
        if handler is None:
            return False
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None:
                    return False
                length = value
            elif name == b"transfer-encoding":
                return False
        if length is None or not length.isdigit() or int(length) > lane.max_body_bytes:
            return False  # no declared size, or too large: read (and refused) the ASGI way
        http_version = parser.get_http_version()
        self.cycle = DirectExchange(
            self,
            handler,
            method=method,
            path=path,
            raw_path=raw_path,
            query=query,
            headers=self.headers,
            http_version=http_version,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
        )
        return True

    def _header_bytes(self) -> int:
        return len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)

    # -- deadlines ------------------------------------------------------------------------

    def time_out(self) -> None:
        """The headers or the body did not arrive in time: answer 408 and close."""
        if self._in_headers:
            self.close_waiting("header_timeout")
            return
        self.deadline = math.inf
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if cycle is not None and not cycle.response_started:
            # The app is waiting for the body: it gets http.disconnect; its answer is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(408, "body_timeout", "the request body did not arrive in time")
        else:
            self.transport.close()

    def close_waiting(self, reason: str) -> None:
        """Close a connection waiting for its request: 408 if part of one came (there is
        nothing to answer a connection that sent no byte)."""
        self.deadline = math.inf
        if self.transport.is_closing():
            return
        if self._header_received == 0:
            self.counters.refused[reason] += 1
            self.transport.close()
        else:
            self._refuse(408, reason, "the request headers did not arrive in time")


def sweep(connections: Iterable[object], now: float | None = None) -> int:
    """Time out every bounded connection whose deadline has passed; returns how many."""
    now = asyncio.get_running_loop().time() if now is None else now
    due = [c for c in connections if isinstance(c, BoundedHttpToolsProtocol) and c.deadline <= now]
    for conn in due:
        conn.time_out()
    return len(due)


def bounded_protocol(
    limits: EdgeLimits, counters: EdgeCounters, lane: DirectLane | None = None
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to give `uvicorn.Config(http=...)`; `lane` names the requests it
    answers itself (direct.py)."""
    attributes = {
        "limits": limits,
        "counters": counters,
        "overloaded": staticmethod(overloaded_app(limits.retry_after_s, counters)),
        "lane": lane,
    }
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), attributes)
