"""What each console page shows, gathered from the pool, the counters, the sync's history
file, the activation journal and the history store's outcomes (plain data for the templates;
no HTML here)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from gateway.errors import HistoryUnavailableError
from gateway.history.query import model_performance
from gateway.history.store import GatewayHistory
from gateway.pool.model_pool import ModelPool
from gateway.shadow.worker import Shadow
from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.journal import read_journal
from gateway.ui.performance import PerformancePanel, panel
from gateway.ui.rates import TrafficSampler, Window
from gateway.ui.timeline import At, Timeline, build_timeline, what_served
from registry_sync.registry.timeline import ModelHistory, VersionRecord
from registry_sync.sync.history import Refusal, SyncHistory, read_history

__all__ = ["ConsoleData", "LiveRow", "MayRead", "ModelRow", "PerformanceView", "StageRow"]

# May the caller read (model, stage)? stage None: some stage of the model.
MayRead = Callable[[str, str | None], bool]


def _all(model: str, stage: str | None) -> bool:
    return True


log = logging.getLogger("stageserve.ui")


@dataclass(frozen=True)
class StageRow:
    stage: str
    assigned: str
    serving: str | None
    state: str  # loaded, loading, pending, failed
    error: str | None
    requests_per_s: float
    error_ratio: float | None  # None: no requests in the window

    @property
    def health(self) -> str:
        """ok: serves what is assigned; behind: answers with another version; down: nothing."""
        if self.serving is None:
            return "down"
        return "ok" if self.serving == self.assigned and self.state == "loaded" else "behind"


@dataclass(frozen=True)
class ModelRow:
    name: str
    description: str
    labels: list[str]
    stages: list[StageRow]
    requests_per_s: float
    error_ratio: float | None
    sync_errors: list[str] = field(default_factory=list)

    def matches(self, query: str) -> bool:
        needle = query.strip().lower()
        haystack = " ".join([self.name, self.description, *self.labels]).lower()
        return all(word in haystack for word in needle.split())


@dataclass(frozen=True)
class LiveRow:
    model: str
    stage: str
    version: str
    requests_per_s: float
    p50_s: float | None
    p99_s: float | None
    errors_per_s: float
    errors_by_status: dict[str, float]


@dataclass(frozen=True)
class PerformanceView:
    """The performance section of a page: a panel per model, or why there is none."""

    since: float
    until: float
    bucket_s: float
    panels: list[PerformancePanel]
    # Why nothing can be shown: no history store, or it cannot be read now.
    unavailable: str | None = None

    @property
    def outcomes(self) -> int:
        return sum(p.outcomes for p in self.panels)


def _ratio(errors: float, total: float) -> float | None:
    return errors / total if total > 0 else None


class ConsoleData:
    """Everything the pages read; built once per app."""

    def __init__(
        self,
        pool: ModelPool,
        sampler: TrafficSampler,
        *,
        shadow: Shadow | None,
        history_path: Path | None,
        journal_path: Path | None,
        outcomes: GatewayHistory | None = None,
    ) -> None:
        self.pool = pool
        self.sampler = sampler
        self.shadow = shadow
        self.history_path = history_path
        self.journal_path = journal_path
        self.outcomes = outcomes

    # -- sources --------------------------------------------------------------------------

    def history(self) -> SyncHistory | None:
        if self.history_path is None:
            return None
        try:
            return read_history(self.history_path)
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("unreadable registry history %s: %s", self.history_path, exc)
            return None

    def journal(self) -> list[ActivationEvent]:
        if self.journal_path is None:
            return []
        try:
            return read_journal(self.journal_path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("unreadable activation journal %s: %s", self.journal_path, exc)
            return []

    # -- pages ----------------------------------------------------------------------------

    def models(
        self, history: SyncHistory | None = None, may_read: MayRead = _all
    ) -> list[ModelRow]:
        window = self.sampler.window()
        known = {}
        if history is not None and history.registry is not None:
            known = {m.name: m for m in history.registry.models}
        names = set(self.pool.wanted_models())
        if self.pool.desired is not None:
            names |= {e.model for e in self.pool.desired.errors}
        return [
            self._model_row(name, window, known.get(name), may_read)
            for name in sorted(names)
            if may_read(name, None)
        ]

    def _model_row(
        self, name: str, window: Window, known: ModelHistory | None, may_read: MayRead
    ) -> ModelRow:
        stages = [
            self._stage_row(name, stage, window)
            for stage in self.pool.wanted_stages(name)
            if may_read(name, stage)
        ]
        description, labels = (known.description, list(known.labels)) if known else ("", [])
        for stage in stages:
            route = self.pool.routes.get(name, {}).get(stage.stage)
            if route is not None and not description:
                description = route.loaded.manifest.card.description
                labels = labels or list(route.loaded.manifest.labels)
        shown = {s.stage for s in stages}
        total = window.rate(lambda k: k[0] == name and k[1] in shown)
        errors = window.rate(lambda k: k[0] == name and k[1] in shown and k[3] != "200")
        sync_errors = [
            f"{e.stage or '-'}: {e.message}"
            for e in (self.pool.desired.errors if self.pool.desired else [])
            if e.model == name and may_read(name, e.stage)
        ]
        return ModelRow(
            name, description, labels, stages, total, _ratio(errors, total), sync_errors
        )

    def _stage_row(self, model: str, stage: str, window: Window) -> StageRow:
        status = self.pool.statuses[(model, stage)]
        route = self.pool.routes.get(model, {}).get(stage)
        total = window.rate(lambda k: k[0] == model and k[1] == stage)
        errors = window.rate(lambda k: k[0] == model and k[1] == stage and k[3] != "200")
        return StageRow(
            stage=stage,
            assigned=status.wanted.version,
            serving=route.loaded.version if route else None,
            state=status.state,
            error=status.error,
            requests_per_s=total,
            error_ratio=_ratio(errors, total),
        )

    def model(
        self, name: str, at: datetime | None, may_read: MayRead = _all
    ) -> dict[str, Any] | None:
        history = self.history()
        rows = [r for r in self.models(history, may_read) if r.name == name]
        known = None
        refusals: list[Refusal] = []
        if history is not None:
            refusals = [r for r in history.refusals if r.model == name and may_read(name, r.stage)]
            if history.registry is not None:
                known = next((m for m in history.registry.models if m.name == name), None)
            if known is not None:  # only the stages the caller may read
                known = msgspec.structs.replace(
                    known,
                    events=[e for e in known.events if may_read(name, e.stage)],
                    assigned=[b for b in known.assigned if may_read(name, b.stage)],
                )
        if not rows and known is None:
            return None
        if rows:
            row = rows[0]
        else:  # in the registry, but no stage of this gateway serves it
            assert known is not None
            row = ModelRow(name, known.description, list(known.labels), [], 0.0, None)
        journal = [e for e in self.journal() if e.model == name and may_read(name, e.stage)]
        stages = [s.stage for s in row.stages]
        now = datetime.now(UTC)
        timeline: Timeline = build_timeline(name, known, journal, refusals, now=now, stages=stages)
        answers: list[At] = []
        if at is not None:
            answers = what_served(name, known, journal, at, [st.stage for st in timeline.stages])
        return {
            "model": row,
            "versions": self._versions(name, known),
            "history_available": known is not None,
            "history_generated_at": history.registry.generated_at
            if history and history.registry
            else None,
            "journal_available": self.journal_path is not None,
            "timeline": timeline,
            "at": at,
            "answers": answers,
            "deprecated_at": known.deprecated_at if known else None,
        }

    def _versions(self, name: str, known: ModelHistory | None) -> list[VersionRecord]:
        if known is not None:
            return sorted(known.versions, key=lambda v: v.registered_at or "", reverse=True)
        # No history file (yet): what the loaded versions' packages say about themselves.
        seen: dict[str, VersionRecord] = {}
        for route in self.pool.routes.get(name, {}).values():
            lv, m = route.loaded, route.loaded.manifest
            seen[lv.version] = VersionRecord(
                version=lv.version,
                commit="",
                registered_at=None,
                format=m.format,
                metrics=dict(m.metrics),
                labels=list(m.labels),
                card=msgspec.to_builtins(m.card),
                signature=msgspec.to_builtins(m.signature),
            )
        return list(seen.values())

    def live(self, may_read: MayRead = _all) -> dict[str, Any]:
        window = self.sampler.window()
        rows: dict[tuple[str, str, str], dict[str, float]] = {}
        for (model, stage, version, status), count in window.requests.items():
            if model == "_unknown" or not may_read(model, stage):
                continue  # names clients made up, or what the caller may not read
            bucket = rows.setdefault((model, stage, version), {})
            bucket[status] = bucket.get(status, 0.0) + count
        live = []
        seconds = window.seconds or 1.0
        for (model, stage, version), by_status in sorted(rows.items()):
            total = sum(by_status.values())
            errors = {s: n / seconds for s, n in sorted(by_status.items()) if s != "200" and n}
            live.append(
                LiveRow(
                    model=model,
                    stage=stage,
                    version=version,
                    requests_per_s=total / seconds,
                    p50_s=window.latency_quantile(0.5, (model, stage, version)),
                    p99_s=window.latency_quantile(0.99, (model, stage, version)),
                    errors_per_s=sum(errors.values()),
                    errors_by_status=errors,
                )
            )
        shadows = []
        if self.shadow is not None:
            for model in sorted(self.shadow.plans):
                if not may_read(model, None):
                    continue
                report = self.shadow.report(model)
                report["config"] = [
                    c
                    for c in report["config"]
                    if may_read(model, c["stage"]) and may_read(model, c["shadow_stage"])
                ]
                report["pairs"] = [
                    p
                    for p in report["pairs"]
                    if may_read(model, p["stage"]) and may_read(model, p["shadow_stage"])
                ]
                shadows.append(report)
        return {"rows": live, "window_s": window.seconds, "shadows": shadows}

    async def performance(
        self,
        models: list[str],
        *,
        since: float,
        until: float,
        bucket_s: float,
        may_read: MayRead = _all,
    ) -> PerformanceView:
        """Each model's performance over [since, until), read as GET /models/{m}/performance
        reads it (on the history thread, never on the event loop or the predict path)."""
        if self.outcomes is None or self.outcomes.reader is None:
            missing = self.outcomes.missing if self.outcomes else "no history store"
            return PerformanceView(since, until, bucket_s, [], missing)
        panels: list[PerformancePanel] = []
        for model in models:
            if not may_read(model, None):
                continue
            try:
                report = await model_performance(
                    self.outcomes, self.pool, model, since=since, until=until, bucket_s=bucket_s
                )
            except HistoryUnavailableError as exc:
                log.warning("performance of %s unavailable: %s", model, exc)
                return PerformanceView(since, until, bucket_s, panels, str(exc))
            readable = functools.partial(may_read, model)
            panels.append(panel(report, since=since, until=until, may_read_stage=readable))
        return PerformanceView(since, until, bucket_s, panels)
