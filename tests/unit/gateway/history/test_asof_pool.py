"""The as-of pool: live versions shared, past ones loaded once, evicted least recently used,
never while answering."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from gateway.history.asof.metrics import AsOfMetrics
from gateway.history.asof.pool import AsOfPool
from gateway.pool.model_pool import ModelPool
from gateway.telemetry.metrics import GatewayMetrics
from tests.unit.gateway.fakes import FakeLoader, entry, state


def _pool(loader: FakeLoader, max_versions: int = 2) -> tuple[ModelPool, AsOfPool]:
    metrics = GatewayMetrics(CollectorRegistry())
    live = ModelPool(metrics, loader)
    return live, AsOfPool(live, loader, AsOfMetrics(metrics.registry), max_versions=max_versions)


def test_a_live_version_is_shared_and_past_ones_load_once_however_many_ask() -> None:
    async def run() -> None:
        log: list[str] = []
        loader = FakeLoader(log)
        live, past = _pool(loader)
        await live.reconcile(state(entry("cost", "prod", "v3")))
        assert past.cached("cost", "v3", "sha256:cost-v3") is live.routes["cost"]["prod"].loaded
        e = entry("cost", "prod", "v1")
        both = await asyncio.gather(
            *(past.load("cost", "v1", e.digest, e.package_path) for _ in range(3))
        )
        assert both[0] is both[1] is both[2]
        assert log.count("load cost v1") == 1
        past.close()

    asyncio.run(run())


def test_the_least_recently_used_idle_version_is_evicted_first() -> None:
    async def run() -> None:
        loader = FakeLoader()
        _, past = _pool(loader, max_versions=2)
        loaded = {}
        for v in ("v1", "v2"):
            e = entry("cost", "prod", v)
            loaded[v] = await past.load("cost", v, e.digest, e.package_path)
        assert past.cached("cost", "v1", None) is loaded["v1"]  # v1 used again: v2 is older
        loaded["v1"].inflight += 1  # ...and answering a request right now
        e3 = entry("cost", "prod", "v3")
        await past.load("cost", "v3", e3.digest, e3.package_path)
        assert past.cached("cost", "v2", None) is None
        assert loaded["v2"].predictor.closed and not loaded["v1"].predictor.closed
        # Over the limit only the busy v1 could go: it stays until it is idle.
        e4 = entry("cost", "prod", "v4")
        await past.load("cost", "v4", e4.digest, e4.package_path)
        assert not loaded["v1"].predictor.closed
        past.close()

    asyncio.run(run())
