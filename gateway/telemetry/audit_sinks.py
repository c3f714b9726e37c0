"""Where audit batches go, and what happens while they cannot be written.

Each sink (the file, stdout) keeps the batches it failed to write and retries them whole, in
order, every `retry_s`, so records buffered through a short outage (a full disk) are written
when space returns. While any sink is behind, the audit is *failing*: counted, logged, shown
in /models and /readyz, and in `fail_closed` mode predict refuses to answer (503) until the
backlog is written; in `fail_open` mode predict answers and, past `max_records` held, the
records of new requests are dropped and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["AuditCollector", "AuditHealth", "AuditSinks", "FailureMode"]

log = logging.getLogger("stageserve.audit")

FailureMode = Literal["fail_open", "fail_closed"]
_STILL_FAILING_LOG_S = 60.0


class AuditHealth(msgspec.Struct, frozen=True, kw_only=True):
    """The audit trail's state as /models, /readyz and the metrics report it."""

    mode: str
    state: Literal["ok", "failing", "disabled"]
    backlog: int
    """Records waiting to be written (buffered through a failure, or not flushed yet)."""
    write_failures: int
    dropped: int
    last_error: str | None = None
    last_error_at: str | None = None
    failing_since: str | None = None


@dataclass
class _Sink:
    name: str
    write: Callable[[bytes], None]
    batches: list[bytes] = field(default_factory=list)
    records: int = 0


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class AuditSinks:
    """Writes each batch to every sink; keeps what failed for the next attempt.

    Called from one thread at a time (the audit writer's worker thread, or the event loop once
    that thread has stopped); the loop reads the counters and flags at any time.
    """

    def __init__(
        self,
        sinks: list[tuple[str, Callable[[bytes], None]]],
        *,
        mode: FailureMode = "fail_open",
        max_records: int = 100_000,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sinks = [_Sink(name, write) for name, write in sinks]
        self.mode = mode
        self.max_records = max_records
        self.retry_s = retry_s
        self._clock = clock
        self.failing = False
        self.refusing = False
        self.written = 0
        self.write_failures = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.failing_since: str | None = None
        self._retry_at = 0.0
        self._logged_at = 0.0

    @property
    def held(self) -> int:
        """Records some sink has not written yet."""
        return max((s.records for s in self._sinks), default=0)

    def write(self, data: bytes, count: int, *, force: bool = False) -> None:
        """Queue a batch of `count` records on every sink and, unless a retry is not due yet
        (`force` overrides), try to write everything queued."""
        if count:
            if self.failing and self.held + count > self.max_records:
                self.dropped += count
                self._log_still_failing(f"{count} new records dropped (backlog full)")
            else:
                for sink in self._sinks:
                    sink.batches.append(data)
                    sink.records += count
        if self.failing and not force and self._clock() < self._retry_at:
            return
        self._attempt()

    def give_up(self) -> int:
        """At shutdown: the records that could not be written are lost; count them."""
        lost = self.held
        if lost:
            self.dropped += lost
            log.error(
                "audit: %d records could not be written before shutdown (%s)",
                lost,
                self.last_error,
            )
        for sink in self._sinks:
            sink.batches.clear()
            sink.records = 0
        return lost

    def health(self, pending: int = 0) -> AuditHealth:
        return AuditHealth(
            mode=self.mode,
            state="disabled" if not self._sinks else "failing" if self.failing else "ok",
            backlog=self.held + pending,
            write_failures=self.write_failures,
            dropped=self.dropped,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            failing_since=self.failing_since if self.failing else None,
        )

    def _attempt(self) -> None:
        error: str | None = None
        for i, sink in enumerate(self._sinks):
            if not sink.batches:
                continue
            data = sink.batches[0] if len(sink.batches) == 1 else b"".join(sink.batches)
            try:
                sink.write(data)
            except OSError as exc:
                sink.batches = [data]
                error = f"{sink.name}: {exc.strerror or exc}"
                continue
            if i == 0:
                self.written += sink.records
            sink.batches.clear()
            sink.records = 0
        if error is None:
            if self.failing:
                log.warning("audit writes recovered; the buffered records are written")
            self.failing = self.refusing = False
            return
        now = time.time()
        self.write_failures += 1
        self.last_error, self.last_error_at = error, _utc(now)
        self._retry_at = self._clock() + self.retry_s
        if not self.failing:
            self.failing = True
            self.refusing = self.mode == "fail_closed"
            self.failing_since = self.last_error_at
            self._logged_at = self._clock()
            log.error(
                "audit write failed (%s); %d records kept for retry; %s",
                error,
                self.held,
                "predict answers 503 until they are written"
                if self.refusing
                else "predict keeps answering (fail_open)",
            )
        else:
            self._log_still_failing(f"{self.held} records waiting")

    def _log_still_failing(self, what: str) -> None:
        now = self._clock()
        if now - self._logged_at >= _STILL_FAILING_LOG_S:
            self._logged_at = now
            log.error(
                "audit still failing since %s (%s): %s; %d failed writes, %d records dropped",
                self.failing_since,
                self.last_error,
                what,
                self.write_failures,
                self.dropped,
            )


class AuditCollector(Collector):
    """The audit trail's metrics, read at scrape time (nothing on the request path)."""

    def __init__(self, health: Callable[[], AuditHealth]) -> None:
        self.health = health

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        h = self.health()
        yield CounterMetricFamily(
            "stageserve_audit_write_failures",
            "Audit writes that failed (each retry that fails counts again).",
            value=h.write_failures,
        )
        yield CounterMetricFamily(
            "stageserve_audit_records_dropped",
            "Audit records lost: over the backlog limit while failing, or at shutdown.",
            value=h.dropped,
        )
        yield GaugeMetricFamily(
            "stageserve_audit_backlog_records", "Audit records not written yet.", value=h.backlog
        )
        yield GaugeMetricFamily(
            "stageserve_audit_failing",
            "1 while audit records cannot be written (fail_closed: predict answers 503).",
            value=1 if h.state == "failing" else 0,
        )
