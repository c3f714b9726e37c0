"""`make demo`'s registry, served the way `make demo` serves it: both stages load and answer,
promotion and rollback go through the signature check and swap what prod serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ROOT, ServerProcess, wait_until

pytestmark = pytest.mark.slow

ROW = {"hp": 110, "wt": 2.62, "cyl": 6}


def test_demo_registry_serves_both_stages_and_promotes_and_rolls_back(tmp_path: Path) -> None:
    registry_path = tmp_path / "registry"
    built = subprocess.run(
        [sys.executable, "demo/build_registry.py", str(registry_path), "--port", "8000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "reproduces the article's coefficients" in built.stdout
    cache = tmp_path / "cache"
    cache.mkdir()
    args = ["--registry", str(registry_path), "--poll-interval-s", "5"]
    with ServerProcess(cache, args=args) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        prod = server.predict("cost_predictor", {"inputs": [ROW]}, stage="prod")
        dev = server.predict("cost_predictor", {"inputs": [ROW]}, stage="dev")
        assert (prod.status, prod.headers["x-model-version"]) == (200, "v1.0.0")
        # The article's model: 32.487 - 0.0231 * 110 - 3.1814 * 2.62.
        assert prod.body["predictions"][0] == pytest.approx(21.6085, abs=1e-3)
        assert (dev.status, dev.headers["x-model-version"]) == (200, "v1.2.0")
        assert server.get("/readyz").body["pending"] == []

        registry = GitRegistry(registry_path)
        for version in ("v1.2.0", "v1.0.0"):  # promote dev's version, then roll back
            writer.assign(registry, "cost_predictor", "prod", version)
            wait_until(
                lambda v=version: (
                    server.predict("cost_predictor", {"inputs": [ROW]}).headers["x-model-version"]
                    == v
                ),
                30,
                f"prod to serve {version}",
            )
