"""A rollback never waits behind a slow load, and a superseded load never serves (real processes).

prod serves v1.1.0; v1.2.0 is assigned and takes as long to load as the test wants (its
warm-up waits for a gate file); while it loads, prod is rolled back to v1.0.0. v1.0.0 must
serve before v1.2.0 finishes, v1.2.0 must never answer a request, and no request may fail.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.gated_model import TRUST_GATED, save_gated_package
from tests.integration.load import LoadStream
from tests.integration.server import ServerProcess, wait_until
from tests.integration.sync_procs import gateway
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
BODY = {"inputs": example_rows(1)}


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate-open"


@pytest.fixture
def registry(tmp_path: Path, gate: Path) -> GitRegistry:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    base = tmp_path / "packages"
    writer.register(reg, MODEL, save_sklearn_package(base / "a"), version="v1.0.0")
    writer.register(reg, MODEL, save_sklearn_package(base / "b", offset=100.0), version="v1.1.0")
    slow = save_gated_package(base / "c", gate, offset=200.0)
    writer.register(reg, MODEL, slow, version="v1.2.0")
    writer.assign(reg, MODEL, "prod", "v1.1.0")
    gate.unlink()  # from now on, loading v1.2.0 waits until the test opens the gate
    return reg


def _prod(server: ServerProcess) -> dict[str, object]:
    stage: dict[str, object] = server.get(f"/models/{MODEL}").body["stages"]["prod"]
    return stage


def _discarded(server: ServerProcess) -> float:
    text = server.get("/metrics").body
    for line in text.splitlines():
        if line.startswith(f'stageserve_model_loads_discarded_total{{model="{MODEL}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("mode", ["embedded", "sidecar"])
def test_a_rollback_during_a_slow_load_serves_at_once_and_the_slow_version_never(
    mode: str, registry: GitRegistry, gate: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"
    serve_args = ("--journal-path", str(journal))
    try:
        with gateway(
            mode, registry.path, tmp_path / "cache", serve_args=serve_args, env=TRUST_GATED
        ) as server:
            wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
            with LoadStream(server.port, f"/predict/{MODEL}?stage=prod", BODY, clients=2) as load:
                writer.assign(registry, MODEL, "prod", "v1.2.0")
                wait_until(lambda: _prod(server)["state"] == "loading", 30, "v1.2.0 loading")
                rolled_back = time.monotonic()
                writer.assign(registry, MODEL, "prod", "v1.0.0")
                wait_until(
                    lambda: any(a.version == "v1.0.0" for a in load.answered_since(rolled_back)),
                    30,
                    "the rollback to serve while v1.2.0 still loads",
                )
                lag = time.monotonic() - rolled_back
                assert _prod(server)["assigned_version"] == "v1.0.0"
                gate.touch()  # v1.2.0's load finishes now: it must be thrown away
                wait_until(lambda: _discarded(server) == 1.0, 30, "the discarded load")
                answers = load.stop()
            assert _prod(server)["version"] == "v1.0.0"
            assert server.get("/readyz").body["pending"] == []
    finally:
        gate.touch()
    assert answers and all(a.status == 200 for a in answers)
    assert {a.version for a in answers} == {"v1.1.0", "v1.0.0"}
    activated = [
        json.loads(line)["version"]
        for line in journal.read_text().splitlines()
        if json.loads(line)["kind"] == "activated"
    ]
    assert "v1.2.0" not in activated
    print(f"{mode}: rollback served {lag:.2f} s after assign, v1.2.0 still loading")
