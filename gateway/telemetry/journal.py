"""The activation journal: when each version really started and stopped serving each stage.

The registry records intent; this records what happened in this gateway (they differ by
the sync delay and by failed loads). One JSON line per `ActivationEvent`, appended as the
pool emits them; `served_at` (registry_sync/history/events.py) folds the lines to answer
"which version served prod at T".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

import msgspec

from gateway.telemetry.activation import ActivationEvent
from registry_sync.history.events import ServedAnswer, parse_time, read_journal, served_at

__all__ = ["ActivationJournal", "ServedAnswer", "parse_time", "read_journal", "served_at"]

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


class ActivationJournal:
    """Appends events to a JSON-lines file; use as the pool's activation listener."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(path, "ab")  # noqa: SIM115 - closed in close()

    def __call__(self, event: ActivationEvent) -> None:
        # Swaps are rare (seconds apart at most), so a small synchronous append with a flush
        # on the event loop costs less than handing it to a thread, and is never lost to a
        # crash of this process after the swap.
        if self._file is None:
            return
        try:
            self._file.write(_encoder.encode(event) + b"\n")
            self._file.flush()
        except OSError as exc:
            log.error("cannot append to activation journal %s: %s", self.path, exc)

    def close(self) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None
