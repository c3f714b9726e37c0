"""Predictions as of a past instant through real processes: a real git registry, prod moved
from v1.0.0 to v1.1.0 (answers differ by 100), then `?as_of=` on /predict, V2 and MLflow's
/invocations, by the journal (served) and by the registry (assigned), embedded and sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from registry_sync import api
from registry_sync.errors import HistoryQueryError
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ROOT, ServerProcess, wait_until
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
BODY = {"inputs": example_rows(1)}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> GitRegistry:
    base = tmp_path_factory.mktemp("asof")
    reg = GitRegistry(init_registry(base / "registry"))
    writer.register(reg, MODEL, save_sklearn_package(base / "a"), version="v1.0.0")
    writer.register(reg, MODEL, save_sklearn_package(base / "b", offset=100.0), version="v1.1.0")
    writer.assign(reg, MODEL, "prod", "v1.0.0")
    return reg


@contextmanager
def _sync(registry: Path, cache: Path) -> Iterator[None]:
    log = (cache.parent / "sync.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "sync", "--registry", str(registry),
         "--cache", str(cache), "--poll-interval-s", "0.5"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until((cache / "snapshot.json").is_file, 60, "the first snapshot")
        yield
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _post(server: ServerProcess, path: str, body: Any = BODY) -> Any:
    return server.request(
        "POST", path, json.dumps(body).encode(), {"content-type": "application/json"}
    )


def _swap_to_v11(server: ServerProcess, registry: GitRegistry) -> tuple[float, Any]:
    """Answer once with v1.0.0, move prod to v1.1.0 and wait for it; returns the instant of
    the first answer and the answer."""
    wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
    first = server.predict(MODEL, BODY)
    assert first.headers["x-model-version"] == "v1.0.0"
    t1 = time.time()
    writer.assign(registry, MODEL, "prod", "v1.1.0")
    wait_until(
        lambda: server.predict(MODEL, BODY).headers.get("x-model-version") == "v1.1.0",
        30,
        "prod to serve v1.1.0",
    )
    return t1, first


def test_as_of_answers_with_the_version_of_that_instant_embedded(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    audit, journal = tmp_path / "audit.jsonl", tmp_path / "journal.jsonl"
    args = ["--registry", str(registry.path), "--poll-interval-s", "0.5",
            "--journal-path", str(journal), "--audit-path", str(audit)]  # fmt: skip
    v1_assigned = api.which(MODEL, "prod", registry=registry.path).assigned_at
    started = time.time()
    with ServerProcess(cache, args=args) as server:
        t1, first = _swap_to_v11(server, registry)
        answer = _post(server, f"/predict/{MODEL}?stage=prod&as_of={_iso(t1)}")
        assert answer.status == 200, answer.body
        assert answer.headers["x-model-version"] == "v1.0.0"
        assert (answer.headers["x-model-as-of"], answer.headers["x-model-basis"]) == (
            _iso(t1),
            "served",
        )
        assert (answer.body["as_of"], answer.body["basis"]) == (_iso(t1), "served")
        # The same package through the same code path: the same float, bit for bit.
        assert answer.body["predictions"] == first.body["predictions"]
        # Now, live, prod is v1.1.0; the as-of answer did not disturb it.
        assert server.predict(MODEL, BODY).headers["x-model-version"] == "v1.1.0"

        # The registry's intent: a tag counts from the second after it (see `which --at`).
        at_assigned = datetime.fromisoformat(v1_assigned).timestamp() + 1.5
        assigned = _post(server, f"/predict/{MODEL}?as_of={_iso(at_assigned)}&basis=assigned")
        assert assigned.status == 200, assigned.body
        assert (assigned.body["version"], assigned.body["basis"]) == ("v1.0.0", "assigned")

        # V2 and MLflow's scoring route take the same parameter.
        v2 = _post(
            server,
            f"/v2/models/{MODEL}/infer?as_of={_iso(t1)}",
            {
                "inputs": [
                    {"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
                    for k, v in BODY["inputs"][0].items()
                ]
            },
        )
        assert v2.status == 200, v2.body
        assert v2.body["model_version"] == "v1.0.0"
        assert v2.body["parameters"]["as_of"] == _iso(t1)
        mlflow = _post(
            server,
            f"/invocations?model={MODEL}&as_of={_iso(t1)}",
            {"dataframe_records": BODY["inputs"]},
        )
        assert (mlflow.status, mlflow.headers["x-model-version"]) == (200, "v1.0.0")
        assert mlflow.body["predictions"] == first.body["predictions"]

        # Before prod first served: 404 naming the earliest instant there is an answer for.
        early = _post(server, f"/predict/{MODEL}?as_of={_iso(started - 60)}")
        assert (early.status, early.body["error"]["code"]) == (404, "history_not_found")
        assert early.body["error"]["details"]["reason"] == "before_first_activation"
        assert early.body["error"]["details"]["earliest"] > _iso(started)
        assert _post(server, f"/predict/{MODEL}?as_of=yesterday").status == 422
        assert _post(server, f"/predict/{MODEL}?as_of=2999-01-01T00:00:00Z").status == 422

        # A version whose package no longer matches what served: here a journal line says
        # another digest served the stage `canary` (as after a tag was made again elsewhere).
        fake_at = _iso(time.time() - 1)
        with journal.open("a") as f:
            f.write(json.dumps({"at": fake_at, "model": MODEL, "stage": "canary",
                                "version": "v1.0.0", "digest": "sha256:" + "0" * 64,
                                "kind": "activated"}) + "\n")  # fmt: skip
        gone = _post(server, f"/predict/{MODEL}?stage=canary&as_of={_iso(time.time())}")
        assert (gone.status, gone.body["error"]["code"]) == (410, "version_unavailable")
        assert gone.body["error"]["details"]["reason"] == "digest_mismatch"
    _check_the_python_api(registry, journal, t1, started, first.body["predictions"][0])
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    as_of = [r for r in records if "as_of" in r]
    assert len(as_of) == 8
    assert {(r["version"], r["basis"]) for r in as_of if r["status"] == 200} == {
        ("v1.0.0", "served"),
        ("v1.0.0", "assigned"),
    }


def _check_the_python_api(
    registry: GitRegistry, journal: Path, t1: float, started: float, expected: float
) -> None:
    """api.load answers the same questions from the same journal."""
    model = api.load(MODEL, "prod", as_of=t1, journal=journal, registry=registry.path)
    assert model.version == "v1.0.0"
    # api.load predicts through LoadedModel (a DataFrame), the gateway through its matrix
    # fast path: the same model, summed in another order, so 1e-9 relative.
    assert model.predict(BODY["inputs"])[0] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(HistoryQueryError) as refused:
        api.load(MODEL, "canary", as_of=time.time(), journal=journal, registry=registry.path)
    assert refused.value.reason == "digest_mismatch"
    with pytest.raises(HistoryQueryError) as early:
        api.load(MODEL, "prod", as_of=started - 60, journal=journal, registry=registry.path)
    assert early.value.reason == "before_first_activation"


def test_as_of_in_sidecar_mode_asks_the_sync_for_the_package(
    registry: GitRegistry, tmp_path: Path
) -> None:
    writer.assign(registry, MODEL, "prod", "v1.0.0")
    cache = tmp_path / "cache"
    cache.mkdir()
    journal = tmp_path / "journal.jsonl"
    with (
        _sync(registry.path, cache),
        ServerProcess(cache, args=["--journal-path", str(journal)]) as server,
    ):
        t1, first = _swap_to_v11(server, registry)
        answer = _post(server, f"/predict/{MODEL}?as_of={_iso(t1)}")
        assert answer.status == 200, answer.body
        assert answer.body["version"] == "v1.0.0"
        assert answer.body["predictions"] == first.body["predictions"]
        # The sync exported it under the cache's .history, verified, for the gateway.
        assert list((cache / ".history" / MODEL).glob("v1.0.0-*"))
