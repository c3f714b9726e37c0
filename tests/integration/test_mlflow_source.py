"""The MLflow Model Registry as a source, against a real `mlflow server` (SQLite, local
artifacts served by the tracking server) and models logged with MLflow's own log_model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry_sync.runtimes import LoadedModel
from registry_sync.sync.setup import build_sync
from registry_sync.sync.snapshot import SNAPSHOT_FILE, write_snapshot
from tests.integration.load import LoadStream
from tests.integration.mlflow_server import MlflowServer, log_models, run_in_mlflow_venv
from tests.integration.server import ROOT, ServerProcess, wait_until

pytestmark = pytest.mark.slow

FLAVORS = ("sklearn", "sklearn-gbr", "sklearn-forest", "sklearn-pickle", "statsmodels", "onnx")
POLL_S = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


@pytest.fixture(scope="module")
def logged(server: MlflowServer) -> dict[str, dict[str, Any]]:
    """One model per flavor (named after it) plus a custom pyfunc, each aliased @prod; and
    two versions of `cost` (the second predicts 100 more) for the gateway test, not aliased."""
    requests = [{"model": f"m-{flavor}", "flavor": flavor} for flavor in (*FLAVORS, "pyfunc")]
    requests += [
        {"model": "cost", "flavor": "sklearn"},
        {"model": "cost", "flavor": "sklearn", "offset": 100.0},
    ]
    found = {}
    for item in log_models(server, requests):
        key = item["flavor"] if item["model"] != "cost" else f"cost-{item['version']}"
        found[key] = item
        if item["model"] != "cost":
            server.set_alias(item["model"], "prod", item["version"])
    return found


def _row(model: LoadedModel, row: dict[str, float]) -> dict[str, float]:
    """The logged row keyed by the version's input names (a tensor signature has input_<i>)."""
    return dict(zip((spec.name for spec in model.signature.inputs), row.values(), strict=True))


def test_each_flavor_serves_what_mlflow_itself_predicts(
    server: MlflowServer, logged: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    state = build_sync(server.registry, tmp_path / "cache").run_once()
    served = {entry.model: entry for entry in state.entries if entry.stage == "prod"}
    for flavor in FLAVORS:
        item = logged[flavor]
        entry = served[item["model"]]
        assert entry.version == item["version"]
        model = LoadedModel.from_path(entry.package_path)
        engine = flavor.split("-")[0]
        assert model.engine == engine
        prediction = float(model.predict([_row(model, item["row"])])[0])
        # The same fitted coefficients (or trees) in both; the sums may run in another order
        # (array vs DataFrame path, onnxruntime's kernels), so agree to 1e-9 relative.
        assert prediction == pytest.approx(item["prediction"], rel=1e-9), flavor
    assert {f"m-{f}" for f in FLAVORS} <= set(served)


def test_a_flavor_it_cannot_serve_is_reported_for_that_version_only(
    server: MlflowServer, logged: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    state = build_sync(server.registry, tmp_path / "cache").run_once()
    (error,) = [e for e in state.errors if e.model == "m-pyfunc"]
    assert error.stage == "prod" and error.version == logged["pyfunc"]["version"]
    assert "python_function" in error.message and "sklearn, statsmodels, onnx" in error.message
    assert {e.model for e in state.entries} >= {f"m-{f}" for f in FLAVORS}


def test_legacy_stages_and_a_configured_mapping_choose_the_stages(
    server: MlflowServer, logged: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    model = logged["sklearn-pickle"]["model"]
    server.transition(model, logged["sklearn-pickle"]["version"], "Staging")
    default = build_sync(server.registry, tmp_path / "a", models=[model]).run_once()
    assert {(e.stage, e.version) for e in default.entries} == {("prod", "1"), ("staging", "1")}
    server.set_alias(model, "champion", "1")
    mapped = build_sync(
        server.registry, tmp_path / "b", models=[model], mlflow_stages={"@champion": "live"}
    ).run_once()
    assert [(e.stage, e.version) for e in mapped.entries] == [("live", "1")]


def test_a_version_whose_files_changed_after_first_download_is_refused(
    server: MlflowServer, logged: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    model = logged["statsmodels"]["model"]
    cache = tmp_path / "cache"
    first = build_sync(server.registry, cache, models=[model]).run_once()
    (entry,) = first.entries
    # Someone rewrites the artifact in the store behind the registry's back...
    (stored,) = server.artifacts.rglob("*/models/*/artifacts/model.statsmodels")
    if stored.read_bytes() != (Path(entry.package_path) / "model.statsmodels").read_bytes():
        pytest.fail("found another model's file")
    original = stored.read_bytes()
    try:
        stored.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        # ...and the sync restarts on an emptied package folder: it must download again.
        shutil.rmtree(cache / model)
        write_snapshot(first, cache / SNAPSHOT_FILE)
        again = build_sync(server.registry, cache, models=[model]).run_once()
    finally:
        stored.write_bytes(original)
    (error,) = again.errors
    assert "model.statsmodels" in error.message and "changed since" in error.message
    # The last good entry is kept in the desired state (the gateway keeps serving it).
    assert [e.version for e in again.entries] == [entry.version]


def test_the_readme_walkthrough_logs_and_serves_its_models(
    server: MlflowServer, tmp_path: Path
) -> None:
    """demo/mlflow_log.py, as the README runs it: @prod on version 1, @staging on version 2."""
    done = run_in_mlflow_venv("demo/mlflow_log.py", server.url, "--wait-s", "60")
    assert done.returncode == 0, done.stderr[-2000:]
    state = build_sync(server.registry, tmp_path / "cache", models=["cost_predictor"]).run_once()
    assert not state.errors
    assert {(e.stage, e.version) for e in state.entries} == {("prod", "1"), ("staging", "2")}
    row = {"hp": 110, "wt": 2.62, "cyl": 6}
    prod, staging = (LoadedModel.from_path(e.package_path) for e in state.entries)
    assert prod.predict([row])[0] != pytest.approx(staging.predict([row])[0], abs=0.01)


def test_gateway_follows_the_alias_swaps_under_load_and_keeps_serving_through_deletes_and_outage(
    server: MlflowServer, logged: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """Last in the module: it stops the module's tracking server."""
    token = "tok-never-logged-7f3a"
    mlflow = server
    v1, v2 = logged["cost-1"], logged["cost-2"]
    expected = {v1["version"]: v1["prediction"], v2["version"]: v2["prediction"]}
    mlflow.set_alias("cost", "prod", v1["version"])
    cache = tmp_path / "cache"
    cache.mkdir()
    args = ["--registry", mlflow.registry, "--poll-interval-s", str(POLL_S), "--models", "cost"]
    env = {"MLFLOW_TRACKING_TOKEN": token}
    body = {"inputs": [v1["row"]]}
    with ServerProcess(cache, args=args, env=env) as gateway:
        wait_until(lambda: gateway.get("/readyz").status == 200, 60, "readiness")
        with LoadStream(gateway.port, "/predict/cost?stage=prod", body, clients=3) as load:
            lags = []
            for version in (v2["version"], v1["version"], v2["version"]):
                moved = time.monotonic()
                mlflow.set_alias("cost", "prod", version)
                wait_until(
                    lambda v=version, t=moved: any(a.version == v for a in load.answered_since(t)),
                    30,
                    f"prod to serve version {version}",
                )
                lags.append(time.monotonic() - moved)
            # The alias goes away: v2 keeps serving (deleting is not promoting).
            mlflow.delete_alias("cost", "prod")
            _wait_polls(gateway, 3)
            # The serving version itself is deleted: still served from the cache.
            mlflow.set_alias("cost", "prod", v2["version"])
            mlflow.delete_version("cost", v2["version"])
            _wait_polls(gateway, 3)
            # The tracking server goes away: nothing that serves changes.
            mlflow.stop()
            wait_until(
                lambda: (gateway.get("/models").body["sync"] or {}).get("result") == "error",
                30,
                "the outage in /models",
            )
            since_outage = time.monotonic()
            time.sleep(1.0)
            answers = load.stop()
        logs = gateway.logs()
    assert answers
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} failed, first: {failed[0]}"
    for answer in answers:
        assert answer.body is not None
        assert answer.body["predictions"][0] == pytest.approx(expected[answer.version], rel=1e-9)
    assert {a.version for a in load.answered_since(since_outage)} == {v2["version"]}
    print(f"mlflow alias move -> first new answer at poll {POLL_S}s: {lags}")
    # The credential reached neither the logs nor the cache.
    assert token not in logs
    for path in cache.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    _check_history(mlflow.registry, cache, v1["version"], v2["version"])


def _wait_polls(gateway: ServerProcess, polls: int) -> None:
    start = gateway.get("/models").body["sync"]["last_attempt_at"]
    seen = {start}
    wait_until(
        lambda: (
            seen.add(gateway.get("/models").body["sync"]["last_attempt_at"]) or len(seen) > polls
        ),
        30,
        f"{polls} more polls",
    )


def _check_history(registry: str, cache: Path, v1: str, v2: str) -> None:
    """`registry which --at` answers from the history the sync recorded, server gone or not."""

    def stageserve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", "registry", *args, "--registry", registry,
             "--cache", str(cache), "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    history = stageserve("history", "cost")
    assert history.returncode == 0, history.stderr
    events = json.loads(history.stdout)
    assigned = [(e["event"], e["version"]) for e in events if e["stage"] == "prod"]
    assert assigned[:4] == [
        ("assignment", v1),
        ("assignment", v2),
        ("assignment", v1),
        ("assignment", v2),
    ]
    assert ("unassignment", v2) in assigned
    second = events[1]["time"]
    found = stageserve("which", "cost", "prod", "--at", second)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["version"] == v2
    before = stageserve("which", "cost", "prod", "--at", "2001-01-01")
    assert before.returncode == 1 and "followed this registry since" in before.stderr
