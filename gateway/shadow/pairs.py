"""The comparison pairs of every shadowed model: found or started per item, listed per model.

A pair is (model, stage, primary version+digest, shadow stage, shadow version+digest): when
either stage moves to another version a new pair starts from zero, and the old one stays
readable (up to `MAX_PAIRS` per model, the oldest dropped first).
"""

from __future__ import annotations

from typing import Any

from gateway.pool.loaded import LoadedVersion
from gateway.pool.route_table import Route
from gateway.shadow.compare import Comparator
from gateway.shadow.config import ShadowPlan
from gateway.shadow.metrics import ShadowMetrics
from gateway.shadow.stats import WINDOW, PairStats

__all__ = ["MAX_PAIRS", "PairBook"]

MAX_PAIRS = 16


def _key(plan: ShadowPlan, primary: LoadedVersion, shadow: LoadedVersion) -> tuple[str, ...]:
    return (
        plan.model,
        plan.stage,
        primary.version,
        primary.digest,
        plan.shadow_stage,
        shadow.version,
        shadow.digest,
    )


class PairBook:
    def __init__(self, metrics: ShadowMetrics, *, window: int = WINDOW) -> None:
        self.metrics = metrics
        self.window = window
        self._pairs: dict[tuple[str, ...], PairStats] = {}

    def get(self, plan: ShadowPlan, primary: LoadedVersion, shadow: LoadedVersion) -> PairStats:
        key = _key(plan, primary, shadow)
        stats = self._pairs.get(key)
        if stats is None:
            metrics = self.metrics.pair(plan.model, plan.stage, primary.version, shadow.version)
            comparator = Comparator(primary.schema, shadow.schema)
            stats = self._pairs[key] = PairStats(key, comparator, metrics, window=self.window)
            mine = [k for k in self._pairs if k[0] == plan.model]
            for old in mine[: max(0, len(mine) - MAX_PAIRS)]:
                del self._pairs[old]
        return stats

    def summaries(
        self, model: str, plans: dict[str, ShadowPlan], routes: dict[str, Route]
    ) -> list[dict[str, Any]]:
        """The model's pairs: those the stages route to now first, then the others, newest
        first."""
        current: list[tuple[str, ...]] = []
        for plan in plans.values():
            p, s = routes.get(plan.stage), routes.get(plan.shadow_stage)
            if p is not None and s is not None:
                current.append(_key(plan, p.loaded, s.loaded))
        order = {key: i for i, key in enumerate(current)}
        pairs = [v for k, v in self._pairs.items() if k[0] == model]
        pairs.sort(key=lambda ps: ps.since, reverse=True)  # newest first, then (stable sort)
        pairs.sort(key=lambda ps: order.get(ps.key, len(order)))  # the current pairs first
        return [ps.summary(current=ps.key in order) for ps in pairs]
