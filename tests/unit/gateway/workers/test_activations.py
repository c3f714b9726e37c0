"""One journal for many workers: each activation once, as the server as a whole saw it."""

from __future__ import annotations

from gateway.telemetry.activation import ActivationEvent
from gateway.workers.activations import ActivationMerge


def _event(kind: str, version: str = "v1") -> ActivationEvent:
    return ActivationEvent(
        at="2026-01-01T00:00:00.000Z", model="m", stage="prod", version=version,
        digest=f"sha256:{version}", kind=kind,  # type: ignore[arg-type]
    )  # fmt: skip


def _merge() -> tuple[ActivationMerge, list[tuple[str, str]]]:
    journal: list[tuple[str, str]] = []
    return ActivationMerge([lambda e: journal.append((e.kind, e.version))]), journal


def test_a_swap_on_every_worker_is_one_activation_and_one_deactivation() -> None:
    merge, journal = _merge()
    for worker in (0, 1):
        merge.report(worker, _event("activated", "v1"))
    merge.report(0, _event("activated", "v2"))
    merge.report(0, _event("deactivated", "v1"))
    assert journal == [("activated", "v1"), ("activated", "v2")]  # worker 1 still on v1
    merge.report(1, _event("activated", "v2"))
    merge.report(1, _event("deactivated", "v1"))
    assert journal[2:] == [("deactivated", "v1")]


def test_failures_are_journaled_as_often_as_the_worker_that_saw_most() -> None:
    merge, journal = _merge()
    for worker in (0, 1, 0, 1):
        merge.report(worker, _event("failed", "v3"))
    merge.report(0, _event("failed", "v3"))
    assert journal == [("failed", "v3")] * 3


def test_a_dead_worker_stops_serving_what_only_it_served_but_not_at_shutdown() -> None:
    merge, journal = _merge()
    merge.report(0, _event("activated", "v1"))
    merge.report(1, _event("activated", "v1"))
    merge.gone(0)
    assert journal == [("activated", "v1")]
    merge.gone(1)
    assert journal[1:] == [("deactivated", "v1")]
    merge.report(0, _event("activated", "v1"))  # started again
    merge.gone(0, shutting_down=True)
    assert journal[2:] == [("activated", "v1")]
