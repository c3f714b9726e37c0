"""The direct lane: a predict request answered from the connection's own callbacks, past ASGI.

Under uvicorn every request is an ASGI call: a scope dict, a `RequestResponseCycle` with its
`asyncio.Event`, a task, a coroutine per layer, two `send` messages and two socket writes (the
head, then the body). For a single-row prediction that machinery cost more than the
prediction itself (a bare ASGI app doing nothing: ~23 µs of CPU per request on this machine,
12 of them the second write's system call; answered from the protocol: ~7 µs, RESULTS.md).

A `DirectLane` names the requests it answers itself (by method and path, at the end of the
headers); the protocol (protocol.py) then collects the body and, once it is whole, calls the
lane's handler with a `DirectExchange`. The handler answers with `respond()` — one write of
the head and body — usually before the callback returns; one that must wait (inference on a
thread, a full audit queue) continues in a task (`spawn`), and one that is better served by
the ASGI app after all hands it over (`to_asgi`). Everything else (another method or path, a
body without Content-Length or over the lane's limit, `Expect: 100-continue`, a request
pipelined behind one still being answered, an upgrade, a connection over the cap) goes the
ordinary ASGI way, unchanged.

The exchange stands in for uvicorn's cycle (`protocol.cycle`), so what uvicorn and the edge do
with the request in progress still applies: a lost connection marks it disconnected (its
answer is dropped), graceful shutdown closes the connection after it, the body deadline
answers 408, and the next request on the connection (keep-alive, pipelining) starts when it
is answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

if TYPE_CHECKING:
    from gateway.edge.protocol import BoundedHttpToolsProtocol

__all__ = ["DirectExchange", "DirectHandler", "DirectLane"]

log = logging.getLogger("stageserve.edge")

Header = tuple[bytes, bytes]
_CLOSE = b"connection: close\r\n"
_JSON = ((b"content-type", b"application/json"),)
_INTERNAL_ERROR = (
    b'{"error":{"code":"internal_error","message":"internal server error","details":{}}}'
)


class DirectHandler(Protocol):
    """Answers one exchange (`exchange.respond`, now or later): called once its body has fully
    arrived, or once the connection went before it did (`more_body` is then still True, and
    the answer goes nowhere: the handler still counts and records the request)."""

    def __call__(self, exchange: DirectExchange) -> None: ...


class DirectLane(Protocol):
    """Which requests are answered on the direct lane, and the largest body it reads."""

    max_body_bytes: int

    def handler_for(self, method: str, path: str, query: bytes) -> DirectHandler | None:
        """The handler of a request, or None to serve it the ASGI way. Called once per request
        at the end of its headers: it must be cheap, and must not fail."""
        ...


class _Unset:
    """uvicorn and the edge `set()` the cycle's event when the connection goes; nothing of the
    direct lane waits on it (the body is whole before the handler runs)."""

    __slots__ = ()

    def set(self) -> None:
        return None

    def clear(self) -> None:
        return None

    def is_set(self) -> bool:
        return True


_UNSET: Any = _Unset()


class DirectExchange(RequestResponseCycle):
    """One request on the direct lane: what the handler reads, and how it answers.

    A `RequestResponseCycle` by type (uvicorn's protocol keeps it as `cycle`), with only the
    state uvicorn and the edge read set up; `to_asgi` completes it into a real one.
    """

    def __init__(
        self,
        protocol: BoundedHttpToolsProtocol,
        handler: DirectHandler,
        *,
        method: str,
        path: str,
        raw_path: bytes,
        query: bytes,
        headers: list[Header],
        http_version: str,
        keep_alive: bool,
    ) -> None:
        # Deliberately not RequestResponseCycle.__init__: no Event, no scope (see to_asgi).
        self.protocol = protocol
        self.handler = handler
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query = query
        self.headers = headers
        self.http_version = http_version
        self.content = b""  # the request body (uvicorn's cycle keeps a bytearray in `body`)
        self.transport = protocol.transport
        self.keep_alive = keep_alive
        self.message_event = _UNSET
        self.more_body = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.on_response: Callable[..., None] = protocol.on_response_complete
        self.handled = False

    def run(self) -> None:
        """Hand the exchange to its handler (once)."""
        if self.handled:
            return
        self.handled = True
        try:
            self.handler(self)
        except Exception:  # a bug in the handler: one 500, as uvicorn answers an ASGI app's
            log.exception("direct lane: %s %s failed", self.method, self.path)
            if not self.response_started:
                self.respond(500, _JSON, _INTERNAL_ERROR)

    def add_body(self, chunk: bytes) -> None:
        # Bounded by the Content-Length the lane accepted (httptools frames the body by it).
        self.content = self.content + chunk if self.content else chunk

    def respond(self, status: int, headers: Sequence[Header], body: bytes) -> None:
        """Write the whole answer (status line, headers, `content-length`, body) in one write.

        Header values must be safe to write as they are (no CR/LF): the handler's are built
        from validated values. A connection that went away meanwhile gets nothing."""
        if self.response_complete:
            raise RuntimeError("the exchange is already answered")
        self.response_started = self.response_complete = True
        if self.disconnected:
            return
        parts = [STATUS_LINE[status]]
        for name, value in self.protocol.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"content-length: ", b"%d" % len(body), b"\r\n")
        if not self.keep_alive:
            parts.append(_CLOSE)
        parts += (b"\r\n", body)
        transport = self.transport
        transport.write(b"".join(parts))
        if not self.keep_alive:
            transport.close()
        self.on_response()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Continue in a task (it must end with `respond`); graceful shutdown waits for it."""
        tasks = self.protocol.server_state.tasks
        task = self.protocol.loop.create_task(work)
        task.add_done_callback(tasks.discard)
        tasks.add(task)

    def to_asgi(self, app: Any) -> None:
        """Serve this request through the ASGI `app` after all, as uvicorn would have."""
        protocol = self.protocol
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": protocol.asgi_version, "spec_version": "2.3"},
            "http_version": self.http_version,
            "server": protocol.server,
            "client": protocol.client,
            "scheme": protocol.scheme,
            "root_path": protocol.root_path,
            "headers": self.headers,
            "state": protocol.app_state.copy(),
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query_string": self.query,
        }
        RequestResponseCycle.__init__(
            self,
            scope=scope,  # type: ignore[arg-type]
            transport=protocol.transport,
            flow=protocol.flow,
            logger=protocol.logger,
            access_logger=protocol.access_logger,
            access_log=protocol.access_log,
            default_headers=protocol.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=self.keep_alive,
            on_response=protocol.on_response_complete,
        )
        disconnected = self.disconnected
        self.body = bytearray(self.content)
        self.more_body = False
        self.disconnected = disconnected
        self.message_event.set()
        self.spawn(self.run_asgi(app))
