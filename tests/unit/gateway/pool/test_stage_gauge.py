"""stageserve_stage_loaded and stageserve_stage_activations_total, read from the pool."""

from __future__ import annotations

import asyncio

from gateway.pool.model_pool import ModelPool
from gateway.pool.stage_gauge import StageLoadedGauge
from gateway.telemetry.metrics import GatewayMetrics
from tests.unit.gateway.fakes import FakeLoader, entry, state


def _loaded(pool: ModelPool, model: str, stage: str) -> float | None:
    return pool.metrics.registry.get_sample_value(
        "stageserve_stage_loaded", {"model": model, "stage": stage}
    )


def test_a_stage_whose_assigned_version_failed_reads_0_while_its_old_version_serves() -> None:
    metrics = GatewayMetrics()
    pool = ModelPool(metrics, FakeLoader(broken={"v2"}), retry_failed_load_s=60.0)
    metrics.registry.register(StageLoadedGauge(pool))
    assert _loaded(pool, "cost", "prod") is None  # nothing assigned yet: no series

    async def run() -> None:
        await pool.reconcile(state(entry("cost", "prod", "v1"), entry("cost", "dev", "v1")))
        assert _loaded(pool, "cost", "prod") == 1
        await pool.reconcile(state(entry("cost", "prod", "v2"), entry("cost", "dev", "v1")))

    asyncio.run(run())
    # prod still answers (with v1) but not with what the registry assigned (v2).
    assert pool.routes["cost"]["prod"].loaded.version == "v1"
    assert _loaded(pool, "cost", "prod") == 0
    assert _loaded(pool, "cost", "dev") == 1


def test_every_activation_is_counted_per_stage_the_first_load_and_each_swap() -> None:
    pool = ModelPool(GatewayMetrics(), FakeLoader(), retry_failed_load_s=60.0)

    async def run() -> None:
        for version in ("v1", "v2", "v1"):
            await pool.reconcile(state(entry("cost", "prod", version)))
        await pool.reconcile(state(entry("cost", "prod", "v1")))  # unchanged: no swap

    asyncio.run(run())
    count = pool.metrics.registry.get_sample_value(
        "stageserve_stage_activations_total", {"model": "cost", "stage": "prod"}
    )
    assert count == 3
