"""`stageserve_stage_loaded{model,stage}`: 1 while a stage serves its assigned version, else 0.

Computed when `/metrics` is scraped from the pool's route table and statuses, so "assigned
but not serving" (a failed load, a load still running, a stage left on its previous version)
shows, and alerts, without any traffic to the stage.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway.pool.model_pool import ModelPool

__all__ = ["StageLoadedGauge"]

NAME = "stageserve_stage_loaded"


class StageLoadedGauge(Collector):
    """One series per (model, stage) of the desired state; register on the app's registry."""

    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        routes = self._pool.routes
        for (model, stage), status in sorted(self._pool.statuses.items()):
            route = routes.get(model, {}).get(stage)
            wanted = status.wanted
            serving = (
                route is not None
                and route.loaded.version == wanted.version
                and route.loaded.digest == wanted.digest
            )
            family.add_metric([model, stage], 1.0 if serving else 0.0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            NAME,
            "1 while the stage serves the version (and digest) the registry assigns, else 0.",
            labels=["model", "stage"],
        )
