"""The PostgreSQL sink of one gateway: a spool per stream, the shipper, what they report.

The audit writer appends its batches to the audit spool as to any sink (on its writer
thread; the predict path never sees the database), activation events go to the journal
spool, outcomes to the outcomes spool; the shipper's thread moves them into PostgreSQL.
"Persisted", for `audit_failure_mode: fail_closed`, means written whole to the spool: a
database outage refuses nothing (records wait in the spool and are shipped in order when it
returns); a spool that cannot take a batch (full disk, or `spool_max_bytes` not yet shipped)
refuses like a full disk.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.settings import Settings
from gateway.telemetry.activation import ActivationEvent
from registry_sync.history.postgres.shipper import STREAMS, Shipper, ShipperState
from registry_sync.history.spool import Spool

__all__ = ["HistoryCollector", "HistorySink", "spool_folder"]

log = logging.getLogger("stageserve.history")
_encode = msgspec.json.Encoder().encode


def spool_folder(settings: Settings) -> Path:
    if settings.spool_dir:
        return Path(settings.spool_dir)
    if settings.audit_path:
        return Path(settings.audit_path).parent / "spool"
    if settings.cache_dir:
        return Path(settings.cache_dir) / "spool"
    return Path.home() / ".cache" / "stageserve" / "spool"


class HistorySink:
    def __init__(self, settings: Settings) -> None:
        assert settings.postgres_url is not None
        folder = spool_folder(settings)
        self.spools = {
            stream: Spool(
                folder / stream, max_bytes=settings.spool_max_bytes, fsync=settings.spool_fsync
            )
            for stream in STREAMS
        }
        self.replica = settings.replica_id or socket.gethostname()
        self.shipper = Shipper(
            settings.postgres_url,
            self.spools,
            replica=self.replica,
            batch_bytes=settings.postgres_batch_bytes,
        )
        self.drain_s = settings.postgres_drain_s

    @classmethod
    def from_settings(cls, settings: Settings) -> HistorySink | None:
        return cls(settings) if settings.postgres_url else None

    def audit_sink(self) -> tuple[str, Callable[[bytes], None]]:
        return ("postgres spool", self.spools["audit"].append)

    def journal_listener(self, event: ActivationEvent) -> None:
        """An activation listener (on the event loop; a small write, swaps are rare)."""
        try:
            self.spools["journal"].append(_encode(event) + b"\n")
        except OSError as exc:
            log.error("cannot spool an activation event for PostgreSQL: %s", exc)

    def start(self) -> None:
        self.shipper.start()

    async def stop(self) -> None:
        """Ship what is spooled for up to `postgres_drain_s`, then stop (after the audit
        writer: its last records are in the spool by then)."""
        await asyncio.to_thread(self.shipper.stop, self.drain_s)
        left = sum(self.shipper.backlog().values()) if self.spools else 0
        if left:
            log.warning("history: %d bytes stay spooled, shipped by the next start", left)

    async def settled(self, timeout_s: float = 3.0) -> None:
        """Wait until what the audit spool holds now is in the database (or the timeout)."""
        spool = self.spools["audit"]
        target = spool.end()
        deadline = time.monotonic() + timeout_s
        self.shipper.wake()
        while spool.committed < target and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def health(self) -> dict[str, object]:
        state = self.shipper.snapshot()
        return {"replica": self.replica, **msgspec.to_builtins(state)}


class HistoryCollector(Collector):
    """The sink's metrics, read at scrape time."""

    def __init__(self, snapshot: Callable[[], ShipperState]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.snapshot()
        up = GaugeMetricFamily(
            "stageserve_history_database_up",
            "1 while the shipper is connected to the PostgreSQL history store.",
            value=1 if s.connected else 0,
        )
        yield up
        backlog = GaugeMetricFamily(
            "stageserve_history_spool_bytes",
            "Bytes spooled and not yet in PostgreSQL, by stream.",
            labels=["stream"],
        )
        for stream, size in s.backlog_bytes.items():
            backlog.add_metric([stream], size)
        yield backlog
        shipped = CounterMetricFamily(
            "stageserve_history_shipped_records",
            "Records shipped into PostgreSQL, by stream (a batch shipped again after a crash "
            "counts again; the database keeps one).",
            labels=["stream"],
        )
        for stream, count in s.shipped.items():
            shipped.add_metric([stream], count)
        yield shipped
        yield CounterMetricFamily(
            "stageserve_history_ship_failures",
            "Attempts to ship that failed (the database unreachable or refusing).",
            value=s.failures,
        )
        yield CounterMetricFamily(
            "stageserve_history_rejected_records",
            "Spooled lines the database refused (kept in stageserve_rejected).",
            value=s.rejected,
        )
