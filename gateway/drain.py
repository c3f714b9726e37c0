"""Graceful shutdown: on SIGTERM fail readiness first, keep serving, then stop cleanly.

Kubernetes sends SIGTERM and removes the pod from its Service at about the same time, but
the endpoints update reaches every proxy only later; a pod that stopped accepting at once
would refuse the requests still routed to it. So on the first SIGTERM /readyz turns 503,
requests keep being served for `drain_s`, and only then does uvicorn stop accepting,
finish the requests in flight and run the lifespan shutdown (audit flushed, journal closed).
A second SIGTERM, or SIGINT (Ctrl-C on a laptop), stops without waiting.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

__all__ = ["Drain", "DrainingServer"]

log = logging.getLogger("stageserve.shutdown")


class Drain:
    """Whether this process is shutting down; /readyz reads it on every probe."""

    def __init__(self) -> None:
        self._started = threading.Event()

    @property
    def draining(self) -> bool:
        return self._started.is_set()

    def begin(self) -> bool:
        """Start draining; False if it had already started."""
        if self._started.is_set():
            return False
        self._started.set()
        return True


class DrainingServer(uvicorn.Server):
    """`every_second(server)` runs on uvicorn's own once-a-second tick (the edge's deadline
    sweep): no task or timer of its own."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        drain_s: float,
        every_second: Callable[[uvicorn.Server], object] | None = None,
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_s = drain_s
        self.every_second = every_second
        self._timer: threading.Timer | None = None

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0 and self.every_second is not None:
            self.every_second(self)
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain_s <= 0 or not self.drain.begin():
            if self._timer is not None:
                self._timer.cancel()
            self.drain.begin()
            super().handle_exit(sig, frame)
            return
        log.info(
            "SIGTERM: readiness now fails; serving for %.1f s more, then shutting down",
            self.drain_s,
        )
        self._timer = threading.Timer(self.drain_s, super().handle_exit, args=(sig, frame))
        self._timer.daemon = True
        self._timer.start()

    def run_until_stopped(self, sockets: list[socket.socket] | None = None) -> None:
        """Run; a SIGTERM that led to a clean shutdown is a normal exit (status 0).

        uvicorn re-raises the signals it captured once it has shut down; with the default
        SIGTERM disposition that would kill the process (status -15) after a clean drain.
        """
        previous = signal.signal(signal.SIGTERM, _ignore)
        try:
            self.run(sockets=sockets)
        finally:
            signal.signal(signal.SIGTERM, previous)


def _ignore(sig: int, frame: FrameType | None) -> None:
    del sig, frame
