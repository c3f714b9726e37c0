"""Activation events: when a version really started or stopped serving a stage, and the fold
that answers "which version served NAME#STAGE at T" from them.

The gateway's pool emits the events (gateway/telemetry/activation.py) and its journal appends
them as JSON lines; a PostgreSQL store keeps them too, with the replica that emitted them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "ActivationEvent",
    "ActivationKind",
    "ServedAnswer",
    "decode_event",
    "first_activation",
    "iso",
    "parse_time",
    "read_journal",
    "served_at",
    "versions_served_between",
]

log = logging.getLogger(__name__)

# "refused": an assignment the trust policy did not follow (version = the refused one).
ActivationKind = Literal["activated", "deactivated", "failed", "refused"]


class ActivationEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One change of what a (model, stage) serves, as the pool saw it happen."""

    at: str
    model: str
    stage: str
    version: str
    digest: str
    kind: ActivationKind
    message: str = ""


_decoder = msgspec.json.Decoder(ActivationEvent)


def decode_event(line: bytes) -> ActivationEvent:
    return _decoder.decode(line)


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


def served_at(
    events: Iterable[ActivationEvent], model: str, stage: str, at: datetime
) -> ServedAnswer:
    """The version serving (model, stage) at `at`: the newest activation before it that no
    deactivation of the same version followed. Events of several replicas fold the same way
    (the newest activation anywhere wins), so they must come in time order."""
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


def first_activation(
    events: Iterable[ActivationEvent], model: str, stage: str
) -> ActivationEvent | None:
    """The earliest activation of (model, stage): before it, nothing served."""
    for event in events:
        if event.model == model and event.stage == stage and event.kind == "activated":
            return event
    return None


def versions_served_between(
    events: list[ActivationEvent], model: str, stage: str, start: datetime, end: datetime
) -> set[str]:
    """Every version that served (model, stage) at some instant of [start, end]: what a
    request that started at `start` and ended at `end` may have been answered by (it is
    routed once, somewhere in between)."""
    found = {v} if (v := served_at(events, model, stage, start).version) else set()
    for event in events:
        if (
            event.kind == "activated"
            and event.model == model
            and event.stage == stage
            and start < parse_time(event.at) <= end
        ):
            found.add(event.version)
    return found


def parse_time(text: str) -> datetime:
    """ISO 8601 with or without a zone; a naive time is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    """`2026-10-01T12:00:00.000Z`: UTC, milliseconds, as every history time is written."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
