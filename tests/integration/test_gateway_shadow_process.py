"""The shadow process (gateway/shadow/child.py) with real packages, a real pool and a real
child process: it predicts what the gateway sends at idle priority (loads at the normal
one), is started again when it dies, and ends with the gateway's shadow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.pool.loaded import load_version
from gateway.pool.model_pool import ModelPool
from gateway.shadow.config import shadow_plans
from gateway.shadow.metrics import ShadowMetrics
from gateway.shadow.worker import Shadow
from gateway.telemetry.audit import AuditWriter
from gateway.telemetry.metrics import GatewayMetrics
from registry_sync.sync.snapshot import DesiredState
from tests.integration.server import entry
from tests.models import example_rows, save_onnx_package

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("shadow-process")
    return save_onnx_package(base / "v1"), save_onnx_package(base / "v2", offset=1.0)


async def _shadow(packages: tuple[Path, Path]) -> tuple[ModelPool, Shadow]:
    pool = ModelPool(GatewayMetrics(), load_version)
    primary, candidate = packages
    await pool.reconcile(
        DesiredState(
            generated_at="2026-01-01T00:00:00Z",
            registry="tests",
            entries=[
                entry(MODEL, "prod", "v1.0.0", primary),
                entry(MODEL, "dev", "v2.0.0", candidate),
            ],
        )
    )
    plans = shadow_plans({MODEL: {"prod": "dev"}})
    metrics = ShadowMetrics(CollectorRegistry())
    return pool, Shadow(pool, metrics, AuditWriter(), plans, executor="process", priority="idle")


def _offer(pool: ModelPool, shadow: Shadow, rid: str) -> None:
    route = pool.routes[MODEL]["prod"]
    body = json.dumps({"inputs": example_rows(2)}).encode()
    batch = route.loaded.schema.decode(body)
    predictions = route.loaded.schema.predictions(route.loaded.predict(batch), batch.rows)
    shadow.offer(route, batch, predictions, 0.001, rid)


def _compared(shadow: Shadow) -> int:
    return sum(pair["requests"] for pair in shadow.report(MODEL)["pairs"])


async def _until(done: Any, what: str) -> None:
    # Another process does the work: real time passes (bounded; nothing here is timed).
    for _ in range(6000):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def test_shadow_predictions_run_in_a_process_of_their_own_at_idle_priority_and_end_with_it(
    packages: tuple[Path, Path],
) -> None:
    async def run() -> tuple[dict[str, Any], int, int, set[int], bool]:
        pool, shadow = await _shadow(packages)
        task = asyncio.create_task(shadow.run())
        child = shadow._child
        assert child is not None
        await _until(lambda: child.pid is not None, "the shadow process started")
        for i in range(3):
            _offer(pool, shadow, f"r{i}")
        await _until(lambda: _compared(shadow) == 3, "3 comparisons")
        pid = child.pid
        assert pid is not None
        policy = os.sched_getscheduler(pid)  # set by the process itself before it answers
        threads = {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}
        report = shadow.report(MODEL)
        await shadow.stop(task)
        await pool.close()
        return report, pid, policy, threads, Path(f"/proc/{pid}").exists()

    report, pid, policy, threads, alive_after_stop = asyncio.run(run())
    assert pid != os.getpid()
    assert policy == os.SCHED_IDLE  # predictions yield the CPU...
    assert os.SCHED_OTHER in threads  # ...the loader thread does not (a load is one-off)
    assert not alive_after_stop
    (pair,) = report["pairs"]
    assert (pair["primary_version"], pair["shadow_version"], pair["requests"]) == (
        "v1.0.0",
        "v2.0.0",
        3,
    )
    # v2 is v1 + 1 (offset at training): onnxruntime computes in float32, hence the tolerance.
    assert pair["abs_diff"]["mean"] == pytest.approx(1.0, abs=1e-3)
    assert sum(pair["errors"].values()) == 0


def test_a_shadow_process_that_dies_is_started_again_and_shadowing_goes_on(
    packages: tuple[Path, Path],
) -> None:
    async def run() -> tuple[int, int, int]:
        pool, shadow = await _shadow(packages)
        task = asyncio.create_task(shadow.run())
        child = shadow._child
        assert child is not None
        _offer(pool, shadow, "before")
        await _until(lambda: _compared(shadow) == 1, "the first comparison")
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # an out-of-memory kill, say
        await _until(lambda: child.pid is None, "the death noticed")
        for i in range(2):
            _offer(pool, shadow, f"after-{i}")
        await _until(lambda: _compared(shadow) == 3, "comparisons after the restart")
        new_pid = child.pid or 0
        await shadow.stop(task)
        await pool.close()
        return pid, new_pid, child.starts

    old, new, starts = asyncio.run(run())
    assert new not in (0, old)
    assert starts == 2
