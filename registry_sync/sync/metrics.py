"""Prometheus metrics of the sync loop, on a registry the caller owns (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from registry_sync.sync.snapshot import DesiredState, ModelSyncError

__all__ = ["SyncMetrics"]

POLL_RESULTS = ("ok", "partial", "error")


class SyncMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.polls = Counter(
            "stageserve_sync_polls_total",
            "Registry polls by result: ok, partial (some models failed), error (unreadable).",
            ["result"],
            registry=registry,
        )
        # Children resolved once, so a poll never formats label values.
        self._poll_children = {r: self.polls.labels(result=r) for r in POLL_RESULTS}
        self.last_success = Gauge(
            "stageserve_sync_last_success_timestamp_seconds",
            "Unix time of the last poll that read the registry.",
            registry=registry,
        )
        self.model_errors = Gauge(
            "stageserve_sync_model_errors",
            "1 for each (model, stage) whose assigned version could not be materialized.",
            ["model", "stage"],
            registry=registry,
        )
        self.untrusted = Gauge(
            "stageserve_sync_untrusted_assignments",
            "Assignments to a protected stage not followed: unsigned or not by an allowed "
            "signer (the newest trusted assignment keeps serving).",
            ["model", "stage"],
            registry=registry,
        )
        self.loop_failures = Counter(
            "stageserve_sync_loop_failures_total",
            "Failures of the sync loop itself (unexpected errors, an unwritable snapshot); "
            "the loop logs each and goes on after a backoff.",
            registry=registry,
        )
        self.consecutive_failures = Gauge(
            "stageserve_sync_consecutive_failures",
            "Polls in a row that could not read the registry (drives the backoff).",
            registry=registry,
        )

    def record_poll(self, result: str, *, now_s: float, failures: int) -> None:
        self._poll_children[result].inc()
        self.consecutive_failures.set(failures)
        if result != "error":
            self.last_success.set(now_s)

    def record_untrusted(self, state: DesiredState) -> None:
        self.untrusted.clear()
        counts: dict[tuple[str, str], int] = {}
        for refused in state.untrusted:
            key = (refused.model, refused.stage)
            counts[key] = counts.get(key, 0) + 1
        for (model, stage), count in counts.items():
            self.untrusted.labels(model=model, stage=stage).set(count)

    def record_model_errors(self, errors: list[ModelSyncError]) -> None:
        self.model_errors.clear()
        for err in errors:
            self.model_errors.labels(model=err.model, stage=err.stage or "").set(1)
