"""Metrics of several processes as one: what `/metrics` shows with `--workers N`.

Each worker keeps its metrics in its own memory (the hot-path counters are plain Python
numbers, fast_metrics.py); a scrape, answered by whichever worker the kernel gave the
connection, gathers every other process's families over the control socket
(gateway/workers/) and merges them here: counters and histograms add up (the total of
requests sent, whoever served them), gauges follow `GAUGE_MERGE`. Nothing is paid per
request (prometheus-client's multiprocess mode writes an mmap'd file on every update and
knows nothing of custom collectors, which most of ours are).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import msgspec
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

__all__ = [
    "GAUGE_MERGE",
    "Family",
    "MergedCollector",
    "WireSample",
    "counters_only",
    "from_wire",
    "merge",
    "to_wire",
]

Rule = Literal["sum", "max", "min"]

# How each gauge of several processes becomes one. Counts of things each process holds add
# up; flags and "what serves" take the max (1 if any process says so); `stage_loaded` is 1
# only while every worker serves the assigned version. The sync's gauges come from the one
# process that syncs (max of one value). A gauge missing here takes "max" (never an absurd
# sum of timestamps); tests/unit/gateway/telemetry/test_merge.py asks every gauge to be listed.
GAUGE_MERGE: dict[str, Rule] = {
    "stageserve_inflight_requests": "sum",
    "stageserve_http_connections": "sum",
    "stageserve_audit_backlog_records": "sum",
    "stageserve_shadow_queue_depth": "sum",
    "stageserve_history_spool_bytes": "sum",
    # each worker keeps its own as-of pool: the server holds the sum
    "stageserve_asof_pool_versions": "sum",
    "stageserve_asof_pool_bytes": "sum",
    "stageserve_audit_failing": "max",
    "stageserve_model_info": "max",
    "stageserve_history_database_up": "min",
    "stageserve_stage_loaded": "min",
    "stageserve_sync_last_success_timestamp_seconds": "max",
    "stageserve_sync_model_errors": "max",
    "stageserve_sync_untrusted_assignments": "max",
    "stageserve_sync_consecutive_failures": "max",
}
_ADDED = frozenset({"counter", "histogram", "summary", "gaugehistogram", "unknown"})


class WireSample(msgspec.Struct, array_like=True, frozen=True):
    name: str
    labels: dict[str, str]
    value: float


class Family(msgspec.Struct, array_like=True, frozen=True):
    """One metric family as it crosses the control socket."""

    name: str
    documentation: str
    type: str
    unit: str
    samples: list[WireSample]


def to_wire(families: Iterable[Metric]) -> list[Family]:
    return [
        Family(
            m.name,
            m.documentation,
            m.type,
            m.unit,
            [WireSample(s.name, dict(s.labels), float(s.value)) for s in m.samples],
        )
        for m in families
    ]


def from_wire(families: Iterable[Family]) -> list[Metric]:
    out = []
    for f in families:
        metric = Metric(f.name, f.documentation, f.type, f.unit)
        metric.samples = [Sample(s.name, s.labels, s.value) for s in f.samples]
        out.append(metric)
    return out


def merge(sources: Iterable[Iterable[Family]]) -> list[Family]:
    """One family per name; samples with the same name and labels combined by type/rule."""
    merged: dict[str, tuple[Family, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for families in sources:
        for f in families:
            entry = merged.get(f.name)
            if entry is None:
                entry = merged[f.name] = (f, {})
            rule: Rule = "sum" if f.type in _ADDED else GAUGE_MERGE.get(f.name, "max")
            values = entry[1]
            for s in f.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                old = values.get(key)
                if old is None:
                    values[key] = s.value
                elif rule == "sum":
                    values[key] = old + s.value
                elif rule == "max":
                    values[key] = max(old, s.value)
                else:
                    values[key] = min(old, s.value)
    return [
        Family(
            first.name,
            first.documentation,
            first.type,
            first.unit,
            [WireSample(name, dict(labels), v) for (name, labels), v in values.items()],
        )
        for first, values in merged.values()
    ]


def counters_only(families: Iterable[Family]) -> list[Family]:
    """What of a process outlives it: its counters and histograms (gauges die with it)."""
    return [f for f in families if f.type in _ADDED]


class MergedCollector(Collector):
    """This process's collector and the other processes' families, merged at collect time."""

    def __init__(self, local: Collector, others: list[Family]) -> None:
        self._local = local
        self._others = others
        self._names: frozenset[str] | None = None

    def collect(self) -> Iterator[Metric]:
        families = from_wire(merge([to_wire(self._local.collect()), self._others]))
        for family in families:
            if self._names is None or any(s.name in self._names for s in family.samples):
                yield family

    def restricted_registry(self, names: Iterable[str]) -> MergedCollector:
        """`?name[]=...` scrapes (prometheus-client's exposition calls this)."""
        restricted = MergedCollector(self._local, self._others)
        restricted._names = frozenset(names)
        return restricted
