"""A steady stream of predict requests from several client threads, every answer recorded.

Used by the swap tests: each thread keeps one HTTP/1.1 connection alive (as a real client
pool does) and sends requests back to back until told to stop or a bounded time passes.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "LoadStream"]


@dataclass(frozen=True)
class Answer:
    sent_at: float
    received_at: float
    status: int
    version: str | None
    body: dict[str, Any] | None
    error: str | None = None


@dataclass
class LoadStream:
    port: int
    path: str
    body: dict[str, Any]
    clients: int = 4
    max_seconds: float = 60.0
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> LoadStream:
        payload = json.dumps(self.body).encode()
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.clients):
            t = threading.Thread(target=self._run, args=(payload, deadline), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        return self.answers

    def answered_since(self, t: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.sent_at >= t]

    def _run(self, payload: bytes, deadline: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"content-type": "application/json"}
        while not self._stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                conn.request("POST", self.path, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                answer = Answer(
                    sent_at=sent,
                    received_at=time.monotonic(),
                    status=resp.status,
                    version=resp.getheader("x-model-version"),
                    body=json.loads(raw) if raw else None,
                )
            except (OSError, http.client.HTTPException, ValueError) as exc:
                answer = Answer(sent, time.monotonic(), 0, None, None, error=repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self._lock:
                self.answers.append(answer)
        conn.close()
