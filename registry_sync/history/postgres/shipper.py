"""The shipper: spooled records into PostgreSQL, in order, in batches, on a thread of its own.

For each stream (journal first, then audit, then outcomes) it reads up to `batch_bytes` of
whole lines from the spool, copies them into a staging table and inserts them idempotently
(schema.py), commits the transaction, and only then commits the spool's position. A database
that cannot be reached is retried with a growing pause (up to `max_backoff_s`); meanwhile the
spool grows and nothing else changes. A line the database refuses (not JSON, a NUL in a
string) goes to `stageserve_rejected` as bytes, is counted and logged: it never blocks the
lines behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from registry_sync.history.postgres.schema import INSERTS, STAGING, ensure_schema
from registry_sync.history.postgres.url import redact
from registry_sync.history.spool import Position, Spool

__all__ = ["Shipper", "ShipperState"]

log = logging.getLogger("stageserve.history")

STREAMS = ("journal", "audit", "outcomes")


class ShipperState(msgspec.Struct, kw_only=True):
    """What /models and the metrics show of the sink."""

    store: str = "postgresql"
    location: str
    connected: bool = False
    backlog_bytes: dict[str, int] = {}
    shipped: dict[str, int] = {}
    rejected: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    disconnected_since: str | None = None


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Shipper:
    def __init__(
        self,
        url: str,
        spools: Mapping[str, Spool],
        *,
        replica: str,
        batch_bytes: int = 4 << 20,
        idle_s: float = 0.2,
        connect_timeout_s: float = 5.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.url = url
        self.spools = dict(spools)
        self.replica = replica
        self.batch_bytes = batch_bytes
        self.idle_s = idle_s
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        self.state = ShipperState(location=redact(url), shipped={s: 0 for s in self.spools})
        self._conn: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._drain_until = 0.0
        self.state.disconnected_since = _utc(time.time())

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history-shipper", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was appended: ship it without waiting for the idle pause."""
        self._wake.set()

    def stop(self, drain_s: float = 5.0) -> None:
        """Ship what is spooled for up to `drain_s` more, then stop (the rest stays spooled,
        shipped by the next start)."""
        self._drain_until = time.monotonic() + drain_s
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(drain_s + self.connect_timeout_s + 5)
        self.close()

    def close(self) -> None:
        """Close the connection and the spools (without a thread, after `ship_once`)."""
        self._disconnect()
        for spool in self.spools.values():
            spool.close()

    def backlog(self) -> dict[str, int]:
        return {name: spool.pending_bytes() for name, spool in self.spools.items()}

    def snapshot(self) -> ShipperState:
        self.state.backlog_bytes = self.backlog()
        return self.state

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.5
        while True:
            stopping = self._stop.is_set()
            if stopping and (
                time.monotonic() >= self._drain_until or not any(self.backlog().values())
            ):
                return
            try:
                shipped = self.ship_once()
            except Exception as exc:  # any failure: keep the spool, reconnect, try again
                self._failed(exc)
                if self._wait(backoff):
                    continue
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = 0.5
            if not shipped:
                self._wait(self.idle_s)

    def _wait(self, seconds: float) -> bool:
        """Pause; True when woken early (stopping, or told that more arrived)."""
        if self._stop.is_set():
            remaining = self._drain_until - time.monotonic()
            seconds = max(0.0, min(seconds, remaining))
        woken = self._wake.wait(seconds)
        self._wake.clear()
        return woken and self._stop.is_set()

    def ship_once(self) -> int:
        """Ship every batch waiting now; returns how many records went in."""
        conn = self._connect()
        total = 0
        for stream in STREAMS:
            spool = self.spools.get(stream)
            if spool is None:
                continue
            while True:
                found = spool.read(self.batch_bytes)
                if found is None:
                    break
                position, data = found
                total += self._ship(conn, stream, spool, position, data)
        return total

    def _ship(self, conn: Any, stream: str, spool: Spool, position: Position, data: bytes) -> int:
        import psycopg

        count = data.count(b"\n")
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(STAGING)
                # COPY's text format: one column per line, backslash is its escape character
                # (JSON lines hold no raw tab or newline: JSON escapes them).
                with cur.copy("COPY stageserve_staging (doc) FROM STDIN") as copy:
                    copy.write(data.replace(b"\\", b"\\\\"))
                cur.execute(INSERTS[stream], {"replica": self.replica})
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError):
            self._ship_lines(conn, stream, data)
        spool.commit(position)
        self.state.shipped[stream] = self.state.shipped.get(stream, 0) + count
        return count

    def _ship_lines(self, conn: Any, stream: str, data: bytes) -> None:
        """A batch the database refused: each line on its own; refused lines are kept apart."""
        import psycopg

        for line in data.splitlines():
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(STAGING)
                    with cur.copy("COPY stageserve_staging (doc) FROM STDIN") as copy:
                        copy.write(line.replace(b"\\", b"\\\\") + b"\n")
                    cur.execute(INSERTS[stream], {"replica": self.replica})
            except (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError) as exc:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO stageserve_rejected (stream, replica, line, error) "
                        "VALUES (%s, %s, %s, %s)",
                        (stream, self.replica, line, str(exc)[:500]),
                    )
                self.state.rejected += 1
                log.error("history: the database refused a %s record (kept in "
                          "stageserve_rejected): %s", stream, exc)  # fmt: skip

    # -- the connection ---------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        import psycopg

        conn = psycopg.connect(
            self.url, connect_timeout=max(1, round(self.connect_timeout_s)), autocommit=True
        )
        try:
            ensure_schema(conn)
        except Exception:
            conn.close()
            raise
        self._conn = conn
        if not self.state.connected:
            log.info("history: connected to %s", self.state.location)
        self.state.connected = True
        self.state.disconnected_since = None
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken connection may raise; it is gone either way
                log.debug("closing the history connection failed", exc_info=True)
            self._conn = None

    def _failed(self, exc: Exception) -> None:
        self._disconnect()
        now = time.time()
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        if self.state.connected or self.state.last_error != message:
            log.error(
                "history: cannot ship to %s (%s); records stay in the spool (%d bytes)",
                self.state.location,
                message,
                sum(self.backlog().values()),
            )
        if self.state.connected:
            self.state.disconnected_since = _utc(now)
        self.state.connected = False
        self.state.failures += 1
        self.state.last_error, self.state.last_error_at = message, _utc(now)
