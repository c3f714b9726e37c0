"""The shadow queue and worker on fake versions (hp * N), and the app's wiring in process."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

from gateway.app import create_app, gateway_of
from gateway.pool.model_pool import ModelPool
from gateway.settings import Settings
from gateway.shadow.config import shadow_plans
from gateway.shadow.metrics import ShadowMetrics
from gateway.shadow.worker import Shadow
from gateway.telemetry.audit import AuditWriter
from gateway.telemetry.metrics import GatewayMetrics
from tests.unit.gateway.fakes import FakeLoader, entry, state

BODY = b'{"inputs": [{"hp": 10.0, "wt": 1.0}, {"hp": 20.0, "wt": 1.0}]}'


async def _setup(
    *versions: tuple[str, str], sample: float = 1.0, queue_max: int = 100, **kwargs: Any
) -> tuple[ModelPool, Shadow, FakeLoader]:
    loader = FakeLoader()
    pool = ModelPool(GatewayMetrics(), loader)
    await pool.reconcile(state(*(entry("cost", s, v) for s, v in versions)))
    plans = shadow_plans({"cost": {"prod": "dev"}}, sample=sample)
    shadow = Shadow(
        pool,
        ShadowMetrics(CollectorRegistry()),
        AuditWriter(),
        plans,
        queue_max=queue_max,
        **kwargs,
    )
    return pool, shadow, loader


def _offer(pool: ModelPool, shadow: Shadow, rid: str) -> None:
    route = pool.routes["cost"]["prod"]
    batch = route.loaded.schema.decode(BODY)
    predictions = route.loaded.schema.predictions(route.loaded.predict(batch), batch.rows)
    shadow.offer(route, batch, predictions, 0.001, rid)


def _compared(shadow: Shadow) -> int:
    return sum(pair["requests"] for pair in shadow.report("cost")["pairs"])


async def _until(done: Any) -> None:
    for _ in range(10_000):  # yields to the worker (and its thread), no timed sleeps
        if done():
            return
        await asyncio.sleep(0)
    # A shadow thread at idle priority runs only when a CPU is free: on a busy machine (the
    # suite on every core) it waits for one. Bounded; nothing here is timed.
    for _ in range(6000):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the shadow worker did not get there")


def test_the_worker_compares_each_queued_request_with_the_shadow_version() -> None:
    async def run() -> dict[str, Any]:
        pool, shadow, _ = await _setup(("prod", "v2"), ("dev", "v3"))
        task = asyncio.create_task(shadow.run())
        for i in range(5):
            _offer(pool, shadow, f"r{i}")
        await _until(lambda: _compared(shadow) == 5)
        await shadow.stop(task)
        return shadow.report("cost")

    report = asyncio.run(run())
    (pair,) = report["pairs"]
    # v2 predicts hp * 2, v3 hp * 3: the differences are hp (10 and 20).
    assert pair["abs_diff"]["mean"] == 15.0
    assert pair["abs_diff"]["max"] == 20.0
    assert pair["rel_diff"]["mean"] == 1 / 3
    assert (pair["primary_version"], pair["shadow_version"], pair["current"]) == ("v2", "v3", True)
    assert report["config"] == [{"stage": "prod", "shadow_stage": "dev", "sample": 1.0}]


def test_requests_not_shadowed_are_counted_by_reason() -> None:
    async def run() -> list[dict[str, Any]]:
        reports = []
        pool, shadow, _ = await _setup(("prod", "v2"), sample=0.0)
        _offer(pool, shadow, "a")  # sample 0: never
        reports.append(shadow.report("cost"))
        pool, shadow, _ = await _setup(("prod", "v2"))
        _offer(pool, shadow, "b")  # no dev stage
        reports.append(shadow.report("cost"))
        pool, shadow, _ = await _setup(("prod", "v2"), ("dev", "v2"))
        _offer(pool, shadow, "c")  # dev serves the primary's own version
        reports.append(shadow.report("cost"))
        pool, shadow, _ = await _setup(("prod", "v2"), ("dev", "v3"), queue_max=2)
        for rid in "defg":  # no worker running: two wait, two are skipped
            _offer(pool, shadow, rid)
        reports.append(shadow.report("cost"))
        return reports

    sampled, missing, same, full = asyncio.run(run())
    assert sampled["skipped"]["not_sampled"] == 1
    assert missing["skipped"]["no_shadow_version"] == 1
    assert same["skipped"]["same_version"] == 1
    assert full["skipped"]["queue_full"] == 2
    assert full["pairs"][0]["skipped"]["queue_full"] == 2
    assert full["queue"] == {"depth": 2, "max": 2}


def test_a_shadow_version_swapped_out_mid_call_is_released_only_after_the_call() -> None:
    async def run() -> tuple[bool, bool, int]:
        pool, shadow, loader = await _setup(("prod", "v2"), ("dev", "v3"))
        v3 = pool.routes["cost"]["dev"].loaded
        v3.inline_max_rows = 0  # on the shadow thread
        release = threading.Event()
        plain = v3.predict

        def blocking(batch: Any) -> Any:
            release.wait(30)
            return plain(batch)

        v3.predict = blocking
        task = asyncio.create_task(shadow.run())
        _offer(pool, shadow, "pinned")
        await _until(lambda: v3.inflight == 1)
        await pool.reconcile(state(entry("cost", "prod", "v2"), entry("cost", "dev", "v4")))
        closed_during_call = loader.loaded[("cost", "v3")].predictor.closed
        release.set()
        await _until(lambda: v3.inflight == 0)
        await pool.drain()
        closed_after = loader.loaded[("cost", "v3")].predictor.closed
        await shadow.stop(task)
        return closed_during_call, closed_after, shadow.report("cost")["pairs"][-1]["requests"]

    during, after, compared = asyncio.run(run())
    assert (during, after, compared) == (False, True, 1)


def test_the_app_shadows_predict_requests_and_reports_them() -> None:
    async def run() -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        # Fake versions exist only in this process: the shadow process could not load them.
        settings = Settings(shadow={"cost": {"prod": "staging"}}, shadow_executor="thread")
        app = create_app(settings, loader=FakeLoader())
        async with AsyncTestClient(app) as client:
            gw = gateway_of(app)
            await gw.pool.reconcile(
                state(entry("cost", "prod", "v2"), entry("cost", "staging", "v4"))
            )
            answers = []
            for _ in range(3):
                resp = await client.post(
                    "/predict/cost", content=BODY, headers={"content-type": "application/json"}
                )
                answers.append(resp.json()["predictions"])
            assert gw.shadow is not None
            shadow = gw.shadow
            await _until(lambda: _compared(shadow) == 3)
            report = (await client.get("/models/cost/shadow")).json()
            model = (await client.get("/models/cost")).json()
        return answers, report, model

    answers, report, model = asyncio.run(run())
    assert answers == [[20.0, 40.0]] * 3
    assert report["pairs"][0]["abs_diff"]["mean"] == 30.0  # hp * 4 - hp * 2
    assert model["shadow"] == [{"stage": "prod", "shadow_stage": "staging", "sample": 1.0}]


def test_the_thread_executor_predicts_even_small_requests_off_the_loop_at_idle_priority() -> None:
    async def run() -> tuple[set[int], set[int]]:
        pool, shadow, _ = await _setup(
            ("prod", "v2"), ("dev", "v3"), executor="thread", priority="idle"
        )
        v3 = pool.routes["cost"]["dev"].loaded
        assert v3.inline_max_rows > 0  # a fast version: the inline rule would keep it on the loop
        threads: set[int] = set()
        policies: set[int] = set()
        plain = v3.predict

        def watched(batch: Any) -> Any:
            threads.add(threading.get_ident())
            policies.add(os.sched_getscheduler(0))  # this thread's policy (Linux: per thread)
            return plain(batch)

        v3.predict = watched
        task = asyncio.create_task(shadow.run())
        for i in range(3):
            _offer(pool, shadow, f"r{i}")
        await _until(lambda: _compared(shadow) == 3)
        await shadow.stop(task)
        return threads, policies

    threads, policies = asyncio.run(run())
    assert threading.get_ident() not in threads
    assert policies == {os.SCHED_IDLE}
