"""Counters and histograms for the predict hot path: plain Python numbers, exposed at scrape.

prometheus-client's children take a lock and walk Python objects on every update (~2-3 µs a
histogram observation here); these are updated only from the event-loop thread, so a child is
two additions and a `bisect`, and a custom Collector turns them into metric families when
`/metrics` is scraped (also on the event loop).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

__all__ = ["CounterChild", "FastCounter", "FastHistogram", "HistogramChild"]

_INF = float("inf")


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bounds end with +inf, so every value lands in a bucket (le = first bound >= value).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class FastCounter:
    """A labelled counter; `labels(...)` once, then `child.inc()` per event."""

    def __init__(
        self, name: str, doc: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name.removesuffix("_total")
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], CounterChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> CounterChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = CounterChild()
        return child

    def values(self) -> dict[tuple[str, ...], float]:
        """Label values -> count, copied (the console reads them off the predict path)."""
        return {labels: child.value for labels, child in list(self._children.items())}

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.doc, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        yield family


class FastHistogram:
    """A labelled histogram with fixed buckets (+Inf is added)."""

    def __init__(
        self,
        name: str,
        doc: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.doc = doc
        self.labelnames = tuple(labelnames)
        self.bounds = (*sorted(buckets), float("inf"))
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> HistogramChild:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = HistogramChild(self.bounds)
        return child

    def counts(self) -> dict[tuple[str, ...], list[int]]:
        """Label values -> per-bucket counts (not cumulative; bucket i is `<= bounds[i]`)."""
        return {labels: list(child.counts) for labels, child in list(self._children.items())}

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in list(self._children.items()):
            cumulative = 0
            buckets = []
            for bound, count in zip(self.bounds, list(child.counts), strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == _INF else repr(float(bound)), cumulative))
            family.add_metric(list(values), buckets, child.sum)
        yield family
