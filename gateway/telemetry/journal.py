"""The activation journal: when each version really started and stopped serving each stage.

The registry records intent; this records what happened in this gateway (they differ by
the sync delay and by failed loads). One JSON line per `ActivationEvent`, appended as the
pool emits them; `served_at` folds the lines to answer "which version served prod at T".
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import msgspec

from gateway.telemetry.activation import ActivationEvent

__all__ = ["ActivationJournal", "ServedAnswer", "parse_time", "read_journal", "served_at"]

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ActivationEvent)


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


def read_journal(path: Path) -> list[ActivationEvent]:
    """Every event in file order; a torn last line (crash mid-write) is skipped."""
    events: list[ActivationEvent] = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                events.append(_decoder.decode(line))
            except msgspec.DecodeError:
                log.warning("%s:%d: skipping unreadable journal line", path, number)
    return events


@dataclass(frozen=True)
class ServedAnswer:
    model: str
    stage: str
    at: str
    # None when nothing served the stage at that time.
    version: str | None
    digest: str | None
    since: str | None
    # The last failed activation before `at`, if any, for context.
    last_failure: ActivationEvent | None


def served_at(events: list[ActivationEvent], model: str, stage: str, at: datetime) -> ServedAnswer:
    current: ActivationEvent | None = None
    failure: ActivationEvent | None = None
    for event in events:
        if event.model != model or event.stage != stage or parse_time(event.at) > at:
            continue
        if event.kind == "activated":
            current = event
        elif event.kind == "deactivated":
            # The pool may report the new version's activation before the old one's
            # deactivation; only a deactivation of what is current empties the stage.
            if current is not None and current.version == event.version:
                current = None
        else:
            failure = event
    return ServedAnswer(
        model=model,
        stage=stage,
        at=at.isoformat().replace("+00:00", "Z"),
        version=current.version if current else None,
        digest=current.digest if current else None,
        since=current.at if current else None,
        last_failure=failure,
    )


def parse_time(text: str) -> datetime:
    """ISO 8601 with or without a zone; a naive time is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)
