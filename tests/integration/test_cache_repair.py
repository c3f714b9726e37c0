"""A corrupted copy in the cache is repaired from the registry (real processes).

The registry holds good bytes; the cache's copy of the served package is damaged. Before,
the sync trusted what it had verified once (and, after a restart, reused a folder that
existed without re-exporting it), so a gateway (re)start failed to load the stage forever.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ServerProcess, wait_until
from tests.integration.sync_procs import gateway, sidecar
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
BODY = {"inputs": example_rows(1)}


@pytest.fixture
def registry(tmp_path: Path) -> GitRegistry:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    writer.register(reg, MODEL, save_sklearn_package(tmp_path / "pkg"), version="v1.0.0")
    writer.assign(reg, MODEL, "prod", "v1.0.0")
    return reg


def _corrupt_cached_copy(cache: Path) -> Path:
    [folder] = (cache / MODEL).glob("v1.0.0-*")
    [artifact] = [f for f in folder.iterdir() if f.name != "model.yaml"]
    good = artifact.read_bytes()
    artifact.write_bytes(good[:-8] + b"bit rot!")
    return artifact


def _serves(server: ServerProcess) -> bool:
    answer = server.predict(MODEL, BODY)
    return answer.status == 200 and answer.headers["x-model-version"] == "v1.0.0"


def test_embedded_a_copy_corrupted_while_stopped_is_repaired_at_the_next_start(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with gateway("embedded", registry.path, cache) as server:
        wait_until(lambda: _serves(server), 60, "the first start to serve")
    artifact = _corrupt_cached_copy(cache)
    with gateway("embedded", registry.path, cache) as server:
        wait_until(lambda: _serves(server), 60, "the restarted gateway to serve")
        assert server.get("/readyz").status == 200
    assert artifact.is_file()


def test_sidecar_a_copy_corrupted_while_both_run_is_repaired_before_the_gateway_restarts(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    with sidecar(registry.path, cache):
        with ServerProcess(cache) as server:
            wait_until(lambda: _serves(server), 60, "the gateway to serve")
        # The gateway container restarts (a new pod revision, an OOM kill); the sync, still
        # running, must not keep vouching for the copy that was damaged meanwhile.
        _corrupt_cached_copy(cache)
        with ServerProcess(cache) as server:
            wait_until(lambda: _serves(server), 60, "the restarted gateway to serve")
