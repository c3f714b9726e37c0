"""A model's stage timeline: per stage, bands of what the registry assigned and of what this
gateway really served (the activation journal), with failed loads and refused assignments.

Pure functions over the registry history (written by the sync) and the journal's events; the
page draws the bands as SVG at the x positions computed here, and answers "what served at T".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.journal import parse_time, served_at
from registry_sync.registry.timeline import ModelHistory
from registry_sync.sync.history import Refusal

__all__ = ["At", "Band", "Marker", "StageTimeline", "Timeline", "build_timeline", "what_served"]


@dataclass(frozen=True)
class Band:
    version: str | None
    start: datetime
    # None: still so now.
    end: datetime | None
    x: float = 0.0  # percent of the axis
    width: float = 0.0


@dataclass(frozen=True)
class Marker:
    kind: str  # failed (a load or warm-up failed), refused (the sync would not materialize it)
    at: datetime
    version: str | None
    message: str
    x: float = 0.0


@dataclass
class StageTimeline:
    stage: str
    assigned: list[Band] = field(default_factory=list)
    served: list[Band] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)


@dataclass
class Timeline:
    start: datetime
    end: datetime
    stages: list[StageTimeline]
    # Labels along the axis: (x percent, time).
    ticks: list[tuple[float, datetime]]

    def x(self, t: datetime) -> float:
        """Where `t` falls on the axis, in percent (outside 0-100 when off it)."""
        span = (self.end - self.start).total_seconds()
        return round(100.0 * (t - self.start).total_seconds() / span, 3)


def _served_bands(events: list[ActivationEvent], stage: str) -> list[Band]:
    bands: list[Band] = []
    current: tuple[str, datetime] | None = None
    for e in events:
        if e.stage != stage or e.kind == "failed":
            continue
        at = parse_time(e.at)
        if e.kind == "activated":
            if current is not None and current[0] == e.version:
                continue  # the same version again (a restarted gateway): one band
            if current is not None:
                bands.append(Band(current[0], current[1], at))
            current = (e.version, at)
        elif current is not None and current[0] == e.version:
            # The pool may report the new activation before the old deactivation.
            bands.append(Band(current[0], current[1], at))
            current = None
    if current is not None:
        bands.append(Band(current[0], current[1], None))
    return [b for b in bands if b.end is None or b.end > b.start]


def build_timeline(
    model: str,
    history: ModelHistory | None,
    journal: list[ActivationEvent],
    refusals: list[Refusal],
    *,
    now: datetime,
    stages: list[str] | None = None,
) -> Timeline:
    events = [e for e in journal if e.model == model]
    names = set(stages or [])
    names |= {e.stage for e in events}
    if history is not None:
        names |= {b.stage for b in history.assigned}
    names |= {r.stage for r in refusals if r.model == model and r.stage}
    out = []
    for stage in sorted(names):
        st = StageTimeline(stage)
        if history is not None:
            st.assigned = [
                Band(b.version, parse_time(b.start), parse_time(b.end) if b.end else None)
                for b in history.assigned
                if b.stage == stage
            ]
        st.served = _served_bands(events, stage)
        st.markers = [
            Marker("failed", parse_time(e.at), e.version, e.message)
            for e in events
            if e.stage == stage and e.kind == "failed"
        ] + [
            Marker("refused", parse_time(r.first_at), r.version, r.message)
            for r in refusals
            if r.model == model and r.stage == stage
        ]
        out.append(st)
    times = [b.start for st in out for b in (*st.assigned, *st.served)]
    times += [b.end for st in out for b in (*st.assigned, *st.served) if b.end is not None]
    times += [m.at for st in out for m in st.markers]
    first = min(times, default=now)
    # The axis ends now; it starts a little before the first event (never less than 10 s).
    span = max((now - first).total_seconds() * 1.04, 10.0)
    end = max([now, *times])
    start = end - timedelta(seconds=span)
    timeline = Timeline(start, end, out, [])
    x = timeline.x
    for st in out:
        st.assigned = [_placed(b, x, end) for b in st.assigned]
        st.served = [_placed(b, x, end) for b in st.served]
        st.markers = sorted(
            (Marker(m.kind, m.at, m.version, m.message, x(m.at)) for m in st.markers),
            key=lambda m: m.at,
        )
    timeline.ticks = [(100.0 * i / 4, start + (end - start) * i / 4) for i in range(5)]
    return timeline


def _placed(band: Band, x: Callable[[datetime], float], end: datetime) -> Band:
    left = x(band.start)
    right = x(band.end or end)
    # At least a sliver, so a version that served for a second is still visible.
    return Band(band.version, band.start, band.end, left, max(right - left, 0.2))


@dataclass(frozen=True)
class At:
    stage: str
    served: str | None
    served_since: str | None
    assigned: str | None
    assigned_since: str | None
    last_failure: str | None


def what_served(
    model: str, history: ModelHistory | None, journal: list[ActivationEvent], at: datetime,
    stages: list[str],
) -> list[At]:  # fmt: skip
    """Per stage: the version this gateway served at `at` (journal) and the one the registry
    assigned (history bands)."""
    out = []
    for stage in stages:
        answer = served_at(journal, model, stage, at)
        band = None
        if history is not None:
            for b in history.assigned:
                if (
                    b.stage == stage
                    and parse_time(b.start) <= at
                    and (b.end is None or at < parse_time(b.end))
                ):
                    band = b
        failure = answer.last_failure
        out.append(
            At(
                stage=stage,
                served=answer.version,
                served_since=answer.since,
                assigned=band.version if band else None,
                assigned_since=band.start if band else None,
                last_failure=f"{failure.version} at {failure.at}: {failure.message}"
                if failure
                else None,
            )
        )
    return out
