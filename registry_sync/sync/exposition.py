"""What a `/metrics` scrape reads: a registry's families without the `*_created` samples.

prometheus-client's own Counter and Histogram add a `<name>_created` series (in the text
format, a separate gauge family) while collectors that build families at scrape time (the
gateway's hot-path counters) have none, so a scrape showed `_created` for some metrics only.
Dashboards and alerts never read them; dropping them everywhere keeps every family alike and
the scrape smaller. A view, not `disable_created_metrics()`: that flag is process-global.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["WithoutCreated"]

_CREATED = "_created"
# The types whose families prometheus-client gives a `_created` sample.
_WITH_CREATED = frozenset({"counter", "histogram", "summary", "gaugehistogram"})


class WithoutCreated(Collector):
    """Collects `registry`, leaving out the `_created` samples of counters and histograms."""

    def __init__(self, registry: CollectorRegistry | Collector) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            if family.type not in _WITH_CREATED or not any(
                s.name.endswith(_CREATED) for s in family.samples
            ):
                yield family
                continue
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if not s.name.endswith(_CREATED)]
            yield kept

    def restricted_registry(self, names: Iterable[str]) -> WithoutCreated:
        """`?name[]=...` scrapes (prometheus-client's exposition calls this)."""
        inner = self._registry
        if isinstance(inner, CollectorRegistry):
            return WithoutCreated(inner.restricted_registry(names))
        return self
