"""What serves is told truthfully (real processes).

Before the first desired state, predict routes answered 404 "no model" (a client takes that as
final); when the registry's assigned version could not be brought here, /models showed the
last good version as `assigned_version` and /readyz listed nothing pending.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ServerProcess, wait_until
from tests.integration.sync_procs import gateway
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import git, init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
ROWS = example_rows(1)
JSON = {"content-type": "application/json"}


def test_before_the_first_desired_state_every_predict_route_answers_503_not_ready(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"  # a sidecar that has not written its first snapshot yet
    cache.mkdir()
    v2_body = json.dumps(
        {"inputs": [{"name": "hp", "shape": [1], "datatype": "FP64", "data": [110.0]}]}
    ).encode()
    with ServerProcess(cache) as server:
        answers = {
            "predict": server.predict(MODEL, {"inputs": ROWS}),
            "v2 infer": server.request("POST", f"/v2/models/{MODEL}/infer", v2_body, JSON),
            "v2 pinned": server.request(
                "POST", f"/v2/models/{MODEL}/versions/v1.0.0/infer", v2_body, JSON
            ),
            "mlflow": server.request(
                "POST", f"/invocations?model={MODEL}", json.dumps({"inputs": ROWS}).encode(), JSON
            ),
        }
        for route, answer in answers.items():
            assert answer.status == 503, (route, answer)
            assert int(answer.headers["retry-after"]) > 0, route
        assert answers["predict"].body["error"]["code"] == "not_ready"
        assert server.get(f"/v2/models/{MODEL}/ready").status == 503
        assert server.get("/readyz").status == 503
        assert server.get("/models").body["models"] == []


@pytest.fixture
def registry(tmp_path: Path) -> GitRegistry:
    """prod was assigned v1.0.0, whose package is broken (its artifact was changed after its
    digest was recorded; gto checks no digests), then v1.1.0, which serves."""
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    repo = reg.path
    writer.register(reg, MODEL, save_sklearn_package(tmp_path / "a"), version="v0.9.0")
    [artifact] = [p for p in (repo / "models" / MODEL).iterdir() if p.name != "model.yaml"]
    data = bytearray(artifact.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: the sha256 check catches it
    artifact.write_bytes(bytes(data))
    git(repo, "commit", "-qam", "tamper with the artifact")
    git(repo, "tag", "-a", f"{MODEL}@v1.0.0", "-m", "Registering artifact")
    writer.assign(reg, MODEL, "prod", "v1.0.0")
    pkg = save_sklearn_package(tmp_path / "b", offset=100.0)
    writer.register(reg, MODEL, pkg, version="v1.1.0")
    writer.assign(reg, MODEL, "prod", "v1.1.0")
    return reg


def test_a_withdrawn_version_that_keeps_serving_is_shown_with_the_assignment_and_why(
    registry: GitRegistry, tmp_path: Path
) -> None:
    with gateway("embedded", registry.path, tmp_path / "cache") as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        assert server.get("/readyz").body["pending"] == []
        # v1.1.0 is withdrawn: prod now resolves to v1.0.0, which cannot be materialized.
        writer.deregister(registry, MODEL, "v1.1.0")

        def prod() -> dict[str, object]:
            stage: dict[str, object] = server.get(f"/models/{MODEL}").body["stages"]["prod"]
            return stage

        wait_until(lambda: prod()["assigned_version"] == "v1.0.0", 30, "the assignment shown")
        stage = prod()
        assert stage["version"] == "v1.1.0"  # the last good version keeps serving
        assert stage["assigned_digest"] is None
        assert stage["sync_error"]["version"] == "v1.0.0"  # type: ignore[index]
        assert "sha256" in str(stage["reason"]) and "v1.0.0" in str(stage["reason"])
        ready = server.get("/readyz")
        assert ready.status == 200  # it answers: one bad assignment never unreadies replicas
        [pending] = ready.body["pending"]
        assert pending.startswith(f"{MODEL}#prod: assigned v1.0.0, serving v1.1.0 (")
        assert server.predict(MODEL, {"inputs": ROWS}).headers["x-model-version"] == "v1.1.0"
