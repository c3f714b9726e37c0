"""Follow the registry and hot-swap under load, embedded and as a sidecar (real processes).

A registry holds two versions whose predictions differ by 100; prod is reassigned back and
forth while four clients send requests. No request may fail, and every answer must be the
prediction of the version its `x-model-version` header names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from registry_sync.package.read import read_package
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.runtimes import load_predictor
from tests.integration.load import Answer, LoadStream
from tests.integration.server import ROOT, ServerProcess, wait_until
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import git, init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
POLL_S = 0.5
ROW = example_rows(1)[0]
BODY = {"inputs": [ROW]}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("packages")
    return {
        "v1.0.0": save_sklearn_package(base / "a", export_onnx=True),
        "v1.1.0": save_sklearn_package(base / "b", offset=100.0, export_onnx=True),
    }


@pytest.fixture(scope="module")
def expected(packages: dict[str, Path]) -> dict[str, float]:
    """Each version's prediction for ROW, computed in-process from the package itself."""
    found = {}
    for version, path in packages.items():
        predictor = load_predictor(read_package(path))
        matrix = np.array([[ROW[n] for n in predictor.input_names]], dtype=np.float64)
        found[version] = float(predictor.predict_matrix(matrix).reshape(-1)[0])
    assert abs(found["v1.1.0"] - found["v1.0.0"]) > 50
    return found


@pytest.fixture
def registry(tmp_path: Path, packages: dict[str, Path]) -> GitRegistry:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    for version, path in packages.items():
        writer.register(reg, MODEL, path, version=version)
    writer.assign(reg, MODEL, "prod", "v1.0.0")
    return reg


def _stageserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def _sidecar(registry: Path, cache: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (cache.parent / "sync.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "sync", "--registry", str(registry),
         "--cache", str(cache), "--poll-interval-s", str(POLL_S)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until((cache / "snapshot.json").is_file, 60, "the first snapshot")
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@contextmanager
def _gateway(mode: str, registry: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    cache = tmp_path / "cache"
    cache.mkdir()
    journal = ["--journal-path", str(tmp_path / "journal.jsonl")]
    if mode == "embedded":
        args = ["--registry", str(registry), "--poll-interval-s", str(POLL_S), *journal]
        with ServerProcess(cache, args=args) as server:
            yield server
        return
    with _sidecar(registry, cache), ServerProcess(cache, args=journal) as server:
        yield server


def _check_answers(answers: list[Answer], expected: dict[str, float]) -> None:
    assert answers, "the load generator sent nothing"
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed, first: {failed[0]}"
    for a in answers:
        assert a.body is not None and a.version in expected
        assert a.body["version"] == a.version
        assert a.body["predictions"][0] == pytest.approx(expected[a.version], rel=1e-5)


@pytest.mark.parametrize("mode", ["embedded", "sidecar"])
def test_prod_swaps_back_and_forth_under_load_without_a_failed_request(
    mode: str, registry: GitRegistry, tmp_path: Path, expected: dict[str, float]
) -> None:
    with _gateway(mode, registry.path, tmp_path) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        lags: list[float] = []
        with LoadStream(server.port, f"/predict/{MODEL}?stage=prod", BODY, clients=4) as load:
            time.sleep(0.5)
            for version in ("v1.1.0", "v1.0.0", "v1.1.0", "v1.0.0"):
                assigned = time.monotonic()
                writer.assign(registry, MODEL, "prod", version)
                wait_until(
                    lambda v=version, t=assigned: any(
                        a.version == v for a in load.answered_since(t)
                    ),
                    30,
                    f"prod to serve {version}",
                )
                lags.append(time.monotonic() - assigned)
                time.sleep(0.3)
            answers = load.stop()
    _check_answers(answers, expected)
    versions_seen = {a.version for a in answers}
    assert versions_seen == {"v1.0.0", "v1.1.0"}
    print(f"{mode}: {len(answers)} requests, assign -> first new answer {lags}")


def test_registry_outage_changes_nothing_and_changes_are_picked_up_when_it_returns(
    registry: GitRegistry, tmp_path: Path, expected: dict[str, float]
) -> None:
    moved = tmp_path / "registry-away"
    with _gateway("embedded", registry.path, tmp_path) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        with LoadStream(server.port, f"/predict/{MODEL}?stage=prod", BODY, clients=2) as load:
            shutil.move(registry.path, moved)
            wait_until(
                lambda: (server.get("/models").body["sync"] or {}).get("result") == "error",
                30,
                "the outage to show in /models",
            )
            outage = server.get("/models").body["sync"]
            assert "no longer exists" in outage["message"]
            assert outage["consecutive_failures"] >= 1
            time.sleep(3 * POLL_S)
            shutil.move(moved, registry.path)
            back = time.monotonic()
            writer.assign(registry, MODEL, "prod", "v1.1.0")
            wait_until(
                lambda: any(a.version == "v1.1.0" for a in load.answered_since(back)),
                60,
                "the change made after the registry returned",
            )
            answers = load.stop()
    _check_answers(answers, expected)
    during = [a for a in answers if a.received_at < back]
    assert during and {a.version for a in during} == {"v1.0.0"}


def test_tampered_artifact_is_never_loaded_and_the_error_names_it(
    registry: GitRegistry, tmp_path: Path, expected: dict[str, float]
) -> None:
    repo = registry.path
    with _gateway("embedded", repo, tmp_path) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        artifact = repo / "models" / MODEL / "model.skops"
        raw = bytearray(artifact.read_bytes())
        raw[-2] ^= 0xFF
        artifact.write_bytes(bytes(raw))
        git(repo, "commit", "-qam", "tamper with the model file")
        git(repo, "tag", "-a", f"{MODEL}@v1.2.0", "-m", "Registering artifact")
        writer.assign(registry, MODEL, "prod", "v1.2.0")

        def error_shown() -> bool:
            return "model.skops" in json.dumps(server.get(f"/models/{MODEL}").body)

        wait_until(error_shown, 30, "the digest error in /models")
        answer = server.predict(MODEL, BODY)
        assert answer.status == 200
        assert answer.headers["x-model-version"] in ("v1.0.0", "v1.1.0")
        assert answer.headers["x-model-version"] != "v1.2.0"
        detail = json.dumps(server.get(f"/models/{MODEL}").body)
        assert "sha256" in detail and "v1.2.0" in detail
    assert not list((tmp_path / "cache" / MODEL).glob("v1.2.0*"))


def test_sync_once_exits_zero_only_when_everything_assigned_was_materialized(
    registry: GitRegistry, tmp_path: Path
) -> None:
    good = _stageserve("sync", "--once", "--registry", str(registry.path),
                       "--cache", str(tmp_path / "c1"))  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert f"{MODEL}#prod -> v1.0.0" in good.stdout
    assert (tmp_path / "c1" / "snapshot.json").is_file()

    repo = registry.path
    (repo / "models" / MODEL / "model.onnx").write_bytes(b"not the registered bytes")
    git(repo, "commit", "-qam", "tamper")
    git(repo, "tag", "-a", f"{MODEL}@v1.2.0", "-m", "Registering artifact")
    writer.assign(registry, MODEL, "dev", "v1.2.0")
    bad = _stageserve("sync", "--once", "--registry", str(repo), "--cache", str(tmp_path / "c2"))
    assert bad.returncode == 1
    assert f"{MODEL}@v1.2.0" in bad.stderr and "model.onnx" in bad.stderr

    gone = _stageserve("sync", "--once", "--registry", str(tmp_path / "nowhere"),
                       "--cache", str(tmp_path / "c3"))  # fmt: skip
    assert gone.returncode == 1
    status = json.loads((tmp_path / "c3" / "sync-status.json").read_text())
    assert status["result"] == "error" and "nowhere" in status["message"]


def test_sync_reads_the_settings_file_serve_reads(registry: GitRegistry, tmp_path: Path) -> None:
    config = tmp_path / "pod.yaml"
    cache = tmp_path / "cache-from-config"
    # One file for the whole pod: the sync takes its keys and skips serve's (audit_path).
    config.write_text(
        f"registry: {registry.path}\ncache_dir: {cache}\naudit_path: {tmp_path / 'a.jsonl'}\n"
    )
    done = _stageserve("sync", "--once", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert (cache / "snapshot.json").is_file()
    # Its log lines are JSON, like serve's.
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["logger"] for line in lines)


def test_sync_without_a_registry_names_the_missing_setting(tmp_path: Path) -> None:
    done = _stageserve("sync", "--once", "--cache", str(tmp_path / "c"))
    assert done.returncode == 1
    assert "registry" in done.stderr and "STAGESERVE_REGISTRY" in done.stderr


def test_journal_answers_which_version_served_at_times_across_swaps(
    registry: GitRegistry, tmp_path: Path
) -> None:
    moments: dict[str, str] = {}
    with _gateway("embedded", registry.path, tmp_path) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        for version in ("v1.1.0", "v1.0.0"):
            time.sleep(1.1)  # distinct registry seconds
            moments[f"before {version}"] = _now()
            writer.assign(registry, MODEL, "prod", version)
            wait_until(
                lambda v=version: server.predict(MODEL, BODY).headers["x-model-version"] == v,
                30,
                f"{version} to serve",
            )
        moments["end"] = _now()
    journal = str(tmp_path / "journal.jsonl")

    def served(at: str) -> dict[str, object]:
        done = _stageserve(
            "which", MODEL, "prod", "--served", "--at", at,
            "--journal", journal, "--registry", str(registry.path), "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answer: dict[str, object] = json.loads(done.stdout)
        return answer

    first = served(moments["before v1.1.0"])
    assert first["served"]["version"] == "v1.0.0"  # type: ignore[index]
    assert first["assigned"]["version"] == "v1.0.0"  # type: ignore[index]
    assert served(moments["before v1.0.0"])["served"]["version"] == "v1.1.0"  # type: ignore[index]
    last = served(moments["end"])
    assert last["served"]["version"] == "v1.0.0"  # type: ignore[index]
    assert served("2000-01-01T00:00:00Z")["served"]["version"] is None  # type: ignore[index]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
