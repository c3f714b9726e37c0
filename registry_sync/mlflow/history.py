"""The stage history of an MLflow registry, as the sync observed it.

MLflow keeps no history of alias moves (mlflow/mlflow#2169), so the sync writes one: every
change of what a stage is assigned to, with the time it was first seen, appended to a JSON
lines file. `registry which --at` answers from it for any time since the registry was first
followed; the answer is late by at most one poll interval.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

__all__ = ["HISTORY_FILE", "StageEvent", "StageHistory"]

HISTORY_FILE = "history.jsonl"


class StageEvent(msgspec.Struct, frozen=True, kw_only=True):
    time: str
    unix_s: float
    model: str
    stage: str
    event: str  # "assignment" or "unassignment"
    version: str | None = None
    # What assigned it in MLflow: "@prod" or "Production" (None for an unassignment).
    via: str | None = None
    source: str | None = None


@dataclass
class StageHistory:
    path: Path
    events: list[StageEvent] = field(default_factory=list)
    _loaded: bool = False

    def load(self) -> StageHistory:
        if self._loaded:
            return self
        self._loaded = True
        if not self.path.is_file():
            return self
        decoder = msgspec.json.Decoder(StageEvent)
        for line in self.path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                self.events.append(decoder.decode(line))
            except msgspec.DecodeError:
                continue  # a line torn by a crash mid-write: the rest still counts
        return self

    def current(self) -> dict[tuple[str, str], StageEvent]:
        """(model, stage) -> the latest event (an assignment, or the unassignment after one)."""
        latest: dict[tuple[str, str], StageEvent] = {}
        for event in self.load().events:
            latest[(event.model, event.stage)] = event
        return latest

    def last_assigned(self) -> dict[tuple[str, str], StageEvent]:
        """(model, stage) -> its latest assignment, even when unassigned since."""
        found: dict[tuple[str, str], StageEvent] = {}
        for event in self.load().events:
            if event.event == "assignment":
                found[(event.model, event.stage)] = event
        return found

    def observe(
        self,
        assigned: Mapping[tuple[str, str], tuple[str, str, str]],
        now_s: float,
        *,
        models: set[str] | None = None,
    ) -> list[StageEvent]:
        """Record what changed since the last observation; `assigned` maps (model, stage) to
        (version, via, source). Stages of models outside `models` are left alone."""
        previous = self.current()
        new: list[StageEvent] = []
        # Stamped to the millisecond, and `unix_s` is exactly what `time` says, so asking
        # `--at` the printed time of an event includes that event.
        now_s = math.floor(now_s * 1000) / 1000
        moment = datetime.fromtimestamp(now_s, UTC).isoformat(timespec="milliseconds")
        moment = moment.replace("+00:00", "Z")
        for key, (version, via, source) in sorted(assigned.items()):
            before = previous.get(key)
            if before is not None and before.event == "assignment" and before.version == version:
                continue
            new.append(
                StageEvent(
                    time=moment,
                    unix_s=now_s,
                    model=key[0],
                    stage=key[1],
                    event="assignment",
                    version=version,
                    via=via,
                    source=source,
                )
            )
        for key, before in sorted(previous.items()):
            if key in assigned or before.event != "assignment":
                continue
            if models is not None and key[0] not in models:
                continue
            new.append(
                StageEvent(
                    time=moment,
                    unix_s=now_s,
                    model=key[0],
                    stage=key[1],
                    event="unassignment",
                    version=before.version,
                )
            )
        if new:
            self._append(new)
        return new

    def at(self, model: str, stage: str, unix_s: float) -> StageEvent | None:
        """The assignment in force at `unix_s`, or None (unassigned, or not yet followed)."""
        found: StageEvent | None = None
        for event in self.load().events:
            if event.model == model and event.stage == stage and event.unix_s <= unix_s:
                found = event
        return found if found is not None and found.event == "assignment" else None

    def first_seen_s(self) -> float | None:
        events = self.load().events
        return events[0].unix_s if events else None

    def _append(self, events: list[StageEvent]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(msgspec.json.encode(e) + b"\n" for e in events)
        with open(self.path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.events.extend(events)
