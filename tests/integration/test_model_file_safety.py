"""A registry writer cannot make the gateway run code (real gateway process, real registry).

Payload packages with correct sha256 digests, registered and assigned through the normal API,
are refused when the gateway loads them: the refusal names the global, the version before them
keeps serving, and the payload's marker is never created.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ServerProcess, wait_until
from tests.models import example_rows, save_sklearn_package, save_statsmodels_package
from tests.payloads import EvalPayload, SystemPayload, payload_package, pickled
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"


def test_payloads_with_correct_digests_never_run_and_the_old_version_keeps_serving(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "payload-ran"
    good = save_sklearn_package(tmp_path / "good")
    good_formula = save_statsmodels_package(tmp_path / "good-ols")
    payloads = {
        # eval in a scikit-learn package, os.system in a statsmodels one
        "v1.1.0": payload_package(good, tmp_path / "eval", pickled(EvalPayload(marker))),
        "v1.2.0": payload_package(
            good_formula, tmp_path / "system", pickled(SystemPayload(marker))
        ),
    }
    registry = GitRegistry(init_registry(tmp_path / "registry"))
    writer.register(registry, MODEL, good, version="v1.0.0")
    writer.assign(registry, MODEL, "prod", "v1.0.0")
    for version, package in payloads.items():
        writer.register(registry, MODEL, package, version=version)
    cache = tmp_path / "cache"
    cache.mkdir()
    body = {"inputs": example_rows(1)}
    args = ["--registry", str(registry.path), "--poll-interval-s", "0.5"]
    with ServerProcess(cache, args=args) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        for version, refused in (("v1.1.0", "builtins.eval"), ("v1.2.0", "posix.system")):
            writer.assign(registry, MODEL, "prod", version, force=True)

            def refusal_shown(v: str = version, r: str = refused) -> bool:
                prod = server.get(f"/models/{MODEL}").body["stages"]["prod"]
                return prod["assigned_version"] == v and r in (prod["last_error"] or "")

            wait_until(refusal_shown, 60, f"the refusal of {version} in /models")
            prod = server.get(f"/models/{MODEL}").body["stages"]["prod"]
            assert prod["version"] == "v1.0.0"
            assert f"model.pkl: refused {refused}" in prod["last_error"]
            answer = server.predict(MODEL, body)
            assert answer.status == 200
            assert answer.headers["x-model-version"] == "v1.0.0"
        metrics = server.get("/metrics").body
        assert 'stageserve_model_load_failures_total{model="cost_predictor",version="v1.1.0"}' in (
            metrics
        )
    assert not marker.exists()
