"""Running comparison statistics per (model, stage, primary version, shadow version) pair.

Counts, sums (so means) and maxima are exact over the pair's whole life; p50/p99 are exact
over the last `WINDOW` values, kept in fixed-size rings (absolute differences, and the
primary's and the shadow's inference latencies), so a summary costs one sort of at most
`WINDOW` floats and memory stays bounded however long a pair runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from gateway.shadow.compare import Comparator, Differences
from gateway.shadow.metrics import ERROR_KINDS, PairMetrics

__all__ = ["WINDOW", "PairStats", "Ring"]

WINDOW = 10_000


class Ring:
    """The last `size` values added (a list written round-robin: cheap for a few at a time)."""

    __slots__ = ("_pos", "count", "values")

    def __init__(self, size: int = WINDOW) -> None:
        self.values = [0.0] * size
        self.count = 0  # values ever added
        self._pos = 0

    def add(self, value: float) -> None:
        self.values[self._pos] = value
        self._pos = (self._pos + 1) % len(self.values)
        self.count += 1

    def extend(self, values: list[float]) -> None:
        size = len(self.values)
        if len(values) > size:
            self.count += len(values) - size
            values = values[-size:]
        for value in values:
            self.add(value)

    def window(self) -> np.ndarray:
        return np.asarray(self.values[: min(self.count, len(self.values))], dtype=np.float64)


def _quantiles(ring: Ring, scale: float = 1.0) -> dict[str, float] | None:
    window = ring.window()
    if not len(window):
        return None
    p50, p99 = np.quantile(window, [0.5, 0.99])
    return {"p50": float(p50) * scale, "p99": float(p99) * scale}


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PairStats:
    """One primary version compared with one shadow version, from `since` on."""

    def __init__(
        self,
        key: tuple[str, ...],
        comparator: Comparator,
        metrics: PairMetrics,
        *,
        window: int = WINDOW,
    ) -> None:
        (
            self.model,
            self.stage,
            self.primary_version,
            self.primary_digest,
            self.shadow_stage,
            self.shadow_version,
            self.shadow_digest,
        ) = key
        self.key = key
        self.comparator = comparator
        self.metrics = metrics
        self.since = utc_now_iso()
        self.requests = 0
        self.abs_sum = 0.0
        self.rel_sum = 0.0
        self.abs_max = 0.0
        self.values = 0
        self.labels_compared = 0
        self.labels_agreed = 0
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.queue_full = 0
        self.abs_diffs = Ring(window)
        self.primary_s = Ring(window)
        self.shadow_s = Ring(window)

    def record(self, diffs: Differences, primary_s: float, shadow_s: float) -> None:
        m = self.metrics
        self.requests += 1
        self.primary_s.add(primary_s)
        self.shadow_s.add(shadow_s)
        m.primary_latency.observe(primary_s)
        m.shadow_latency.observe(shadow_s)
        n = len(diffs.abs_diff)
        if n:
            self.values += n
            self.abs_sum += sum(diffs.abs_diff)
            self.rel_sum += sum(diffs.rel_diff)
            self.abs_max = max(self.abs_max, *diffs.abs_diff)
            self.abs_diffs.extend(diffs.abs_diff)
            for value in diffs.abs_diff:
                m.abs_diff.observe(value)
            for value in diffs.rel_diff:
                m.rel_diff.observe(value)
        if diffs.labels_compared:
            self.labels_compared += diffs.labels_compared
            self.labels_agreed += diffs.labels_agreed
            m.comparisons.inc(diffs.labels_compared)
            m.agreements.inc(diffs.labels_agreed)

    def summary(self, *, current: bool) -> dict[str, Any]:
        abs_diff = None
        if self.values:
            abs_diff = {
                "mean": self.abs_sum / self.values,
                **(_quantiles(self.abs_diffs) or {}),
                "max": self.abs_max,
            }
        labels = None
        if self.labels_compared:
            labels = {
                "compared": self.labels_compared,
                "agreements": self.labels_agreed,
                "agreement_rate": self.labels_agreed / self.labels_compared,
            }
        return {
            "stage": self.stage,
            "primary_version": self.primary_version,
            "shadow_stage": self.shadow_stage,
            "shadow_version": self.shadow_version,
            "current": current,
            "since": self.since,
            "requests": self.requests,
            "values": self.values,
            "abs_diff": abs_diff,
            "rel_diff": {"mean": self.rel_sum / self.values} if self.values else None,
            "labels": labels,
            "latency_ms": {
                "primary": _quantiles(self.primary_s, 1000.0),
                "shadow": _quantiles(self.shadow_s, 1000.0),
            },
            "errors": dict(self.errors),
            "skipped": {"queue_full": self.queue_full},
            "window": len(self.abs_diffs.values),
        }
