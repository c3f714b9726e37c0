"""ModelPool under changing assignments: the newest desired state wins, slow loads never block."""

from __future__ import annotations

import asyncio
import threading

import msgspec

from gateway.pool.model_pool import ModelPool
from gateway.telemetry.activation import ActivationEvent
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.snapshot import DesiredEntry, DesiredState
from tests.unit.gateway.fakes import FakeLoader, entry, state


class Gate:
    """Blocks the loader thread on chosen versions until opened (no sleeps, no timing)."""

    def __init__(self, *versions: str) -> None:
        self.versions = set(versions)
        self.entered = {v: threading.Event() for v in versions}
        self.opened = threading.Event()

    def __call__(self, e: DesiredEntry) -> None:
        if e.version in self.versions:
            self.entered[e.version].set()
            assert self.opened.wait(30), "the test never opened the gate"


def _served(pool: ModelPool, model: str, stage: str = "prod") -> str | None:
    route = pool.routes.get(model, {}).get(stage)
    return route.loaded.version if route else None


def _at(generated_at: str, *entries: DesiredEntry) -> DesiredState:
    return msgspec.structs.replace(state(*entries), generated_at=generated_at)


async def _until_entered(gate: Gate, version: str) -> None:
    await asyncio.to_thread(gate.entered[version].wait, 30)


def _pool(gate: Gate, events: list[ActivationEvent], log: list[str]) -> ModelPool:
    pool = ModelPool(GatewayMetrics(), FakeLoader(log, before_load=gate))
    pool.add_listener(events.append)
    return pool


def _activated(events: list[ActivationEvent]) -> list[str]:
    return [f"{e.model} {e.version}" for e in events if e.kind == "activated"]


def test_a_rollback_during_a_slow_load_wins_and_the_slow_version_never_serves() -> None:
    gate, events, log = Gate("v3"), [], []
    pool = _pool(gate, events, log)

    async def run() -> None:
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        pool.submit(state(entry("cost", "prod", "v3")))
        await _until_entered(gate, "v3")
        # Back to v1 while v3 loads: settled at once, v1 never stopped serving.
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        assert _served(pool, "cost") == "v1"
        assert pool.statuses[("cost", "prod")].state == "loaded"
        gate.opened.set()
        while (
            pool.metrics.registry.get_sample_value(
                "stageserve_model_loads_discarded_total", {"model": "cost"}
            )
            != 1.0
        ):
            await asyncio.sleep(0.01)
        await pool.drain()

    asyncio.run(run())
    assert _activated(events) == ["cost v1"]
    assert _served(pool, "cost") == "v1"
    assert [lv.version for lv in pool.loaded_versions()] == ["v1"]


def test_a_rollback_to_a_version_not_in_memory_loads_it_while_the_slow_load_goes_on() -> None:
    gate, events, log = Gate("v3"), [], []
    pool = _pool(gate, events, log)

    async def run() -> None:
        await pool.reconcile(state(entry("cost", "prod", "v2")))
        pool.submit(state(entry("cost", "prod", "v3")))
        await _until_entered(gate, "v3")
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        assert _served(pool, "cost") == "v1"  # before v3 finished loading
        gate.opened.set()
        await pool.close()

    asyncio.run(run())
    assert _activated(events) == ["cost v2", "cost v1"]
    assert sorted(log) == ["load cost v1", "load cost v2", "load cost v3"]


def test_one_models_slow_load_never_delays_another_models_swap() -> None:
    gate, events, log = Gate("v3"), [], []
    pool = _pool(gate, events, log)

    async def run() -> None:
        await pool.reconcile(state(entry("a", "prod", "v1"), entry("b", "prod", "v1")))
        pool.submit(state(entry("a", "prod", "v3"), entry("b", "prod", "v1")))
        await _until_entered(gate, "v3")
        pool.submit(state(entry("a", "prod", "v3"), entry("b", "prod", "v2")))
        while _served(pool, "b") != "v2":
            await asyncio.sleep(0.01)
        assert _served(pool, "a") == "v1"  # still loading v3
        gate.opened.set()
        await pool.reconcile(state(entry("a", "prod", "v3"), entry("b", "prod", "v2")))

    asyncio.run(run())
    assert _served(pool, "a") == "v3" and _served(pool, "b") == "v2"


def test_a_version_wanted_again_reuses_its_load_still_in_progress() -> None:
    gate, events, log = Gate("v3"), [], []
    pool = _pool(gate, events, log)

    async def run() -> None:
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        pool.submit(state(entry("cost", "prod", "v3")))
        await _until_entered(gate, "v3")
        await pool.reconcile(state(entry("cost", "prod", "v1")))
        pool.submit(state(entry("cost", "prod", "v3")))
        gate.opened.set()
        await pool.settled()

    asyncio.run(run())
    assert log == ["load cost v1", "load cost v3"]
    assert _activated(events) == ["cost v1", "cost v3"]


def test_a_failed_version_is_retried_at_once_when_a_new_desired_state_arrives() -> None:
    loader = FakeLoader(broken={"v2"})
    pool = ModelPool(GatewayMetrics(), loader, retry_failed_load_s=3600)

    async def run() -> None:
        first = _at("2026-01-01T00:00:00Z", entry("cost", "prod", "v2"))
        await pool.reconcile(first)
        await pool.reconcile(first)  # the same state again (the retry timer): not retried
        loader.broken.clear()  # e.g. the sync repaired the package in the cache
        await pool.reconcile(_at("2026-01-01T00:00:05Z", entry("cost", "prod", "v2")))

    asyncio.run(run())
    assert loader.log == ["load cost v2", "load cost v2"]
    assert _served(pool, "cost") == "v2"


def test_a_failed_load_is_reported_to_the_hook() -> None:
    reported: list[str] = []
    pool = ModelPool(
        GatewayMetrics(),
        FakeLoader(broken={"v2"}),
        on_load_failure=lambda e: reported.append(e.package_path),
    )
    asyncio.run(pool.reconcile(state(entry("cost", "prod", "v2"))))
    assert reported == ["/packages/cost/v2"]
