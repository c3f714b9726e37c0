"""A model's stage timeline from the registry history and the activation journal."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.telemetry.activation import ActivationEvent
from gateway.ui.timeline import build_timeline, what_served
from registry_sync.registry.timeline import AssignedBand, ModelHistory
from registry_sync.sync.history import Refusal


def _e(at: str, kind: str, version: str, stage: str = "prod") -> ActivationEvent:
    return ActivationEvent(
        at=at, model="m", stage=stage, version=version, digest="d", kind=kind,  # type: ignore[arg-type]
        message="boom" if kind == "failed" else "",
    )  # fmt: skip


HISTORY = ModelHistory(
    name="m",
    assigned=[
        AssignedBand(
            stage="prod", version="v1", start="2026-01-01T00:00:00Z", end="2026-01-01T01:00:00Z"
        ),
        AssignedBand(stage="prod", version="v2", start="2026-01-01T01:00:00Z"),
    ],
)
JOURNAL = [
    _e("2026-01-01T00:00:05.000Z", "activated", "v1"),
    # a restarted gateway activates the same version again: still one band
    _e("2026-01-01T00:30:00.000Z", "activated", "v1"),
    _e("2026-01-01T01:00:03.000Z", "failed", "v2"),
    _e("2026-01-01T01:10:00.000Z", "activated", "v2"),
    _e("2026-01-01T01:10:00.001Z", "deactivated", "v1"),
]
NOW = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


def test_served_bands_follow_the_journal_and_markers_show_failures_and_refusals() -> None:
    refusal = Refusal(model="m", stage="prod", version="v3", message="digest mismatch",
                      first_at="2026-01-01T01:30:00Z", last_at="2026-01-01T01:40:00Z")  # fmt: skip
    tl = build_timeline("m", HISTORY, JOURNAL, [refusal], now=NOW, stages=["prod"])
    (prod,) = tl.stages
    assert [(b.version, b.start.minute, b.end and b.end.minute) for b in prod.served] == [
        ("v1", 0, 10),
        ("v2", 10, None),
    ]
    assert [b.version for b in prod.assigned] == ["v1", "v2"]
    assert [(m.kind, m.version) for m in prod.markers] == [("failed", "v2"), ("refused", "v3")]
    # Positions: ordered, inside the axis, the open band reaching its end.
    xs = [b.x for b in prod.served]
    assert 0 <= xs[0] < xs[1] <= 100
    assert abs(prod.served[-1].x + prod.served[-1].width - 100) < 0.01
    assert tl.x(tl.start) == 0 and tl.x(tl.end) == 100


def test_what_served_at_a_time_reads_the_journal_and_the_assignment_bands() -> None:
    at = datetime(2026, 1, 1, 1, 5, tzinfo=UTC)  # v2 assigned, its load failed: v1 serves
    (answer,) = what_served("m", HISTORY, JOURNAL, at, ["prod"])
    assert (answer.served, answer.assigned) == ("v1", "v2")
    assert answer.last_failure is not None and "boom" in answer.last_failure
    before = datetime(2025, 12, 31, tzinfo=UTC)
    (nothing,) = what_served("m", HISTORY, JOURNAL, before, ["prod"])
    assert (nothing.served, nothing.assigned) == (None, None)
