"""One bad package never blocks the others, and the sync never stops silently (real processes).

A registry holds two models. A version of one of them is broken in a way that used to escape
the sync's error handling (a symlink out of the package, a full cache disk, an unwritable
snapshot); the other model must keep following its assignments within the usual delay, the
broken one keeps serving its last good version, and the failure shows in /models.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import msgspec
import pytest

from registry_sync.package.manifest import FileEntry
from registry_sync.package.read import read_package, sha256_file, write_manifest
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.server import ServerProcess, free_port, wait_until
from tests.integration.small_disk import tmpfs_launcher
from tests.integration.sync_procs import gateway, sidecar, stageserve
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import git, init_registry

pytestmark = pytest.mark.slow

A, B = "cost_predictor", "other"
BODY = {"inputs": example_rows(1)}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("packages")
    return {
        "a1": save_sklearn_package(base / "a1"),
        "a2": save_sklearn_package(base / "a2", offset=100.0),
        "b1": save_sklearn_package(base / "b1", name=B),
    }


@pytest.fixture
def registry(tmp_path: Path, packages: dict[str, Path]) -> GitRegistry:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    writer.register(reg, A, packages["a1"], version="v1.0.0")
    writer.register(reg, A, packages["a2"], version="v1.1.0")
    writer.register(reg, B, packages["b1"], version="v1.0.0")
    writer.assign(reg, A, "prod", "v1.0.0")
    writer.assign(reg, B, "prod", "v1.0.0")
    return reg


def _serves(server: ServerProcess, model: str) -> str | None:
    answer = server.predict(model, BODY)
    return answer.headers.get("x-model-version") if answer.status == 200 else None


def _b_error(server: ServerProcess) -> str:
    return json.dumps(server.get(f"/models/{B}").body["sync"]["errors"])


def _swap_lag_s(registry: GitRegistry, server: ServerProcess) -> float:
    """Assign A's other version and return the seconds until A answers with it."""
    current = _serves(server, A)
    target = "v1.1.0" if current == "v1.0.0" else "v1.0.0"
    assigned = time.monotonic()
    writer.assign(registry, A, "prod", target)
    wait_until(lambda: _serves(server, A) == target, 30, f"{A} to swap to {target}")
    return time.monotonic() - assigned


def _commit_symlink_version(registry: GitRegistry) -> None:
    """other@v1.0.1: the good package plus a symlink that points out of it (git stores links;
    `gto register` checks nothing), assigned to prod."""
    repo = registry.path
    (repo / "models" / B / "evil").symlink_to("../../../../../../etc/passwd")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a link out of the package")
    git(repo, "tag", "-a", f"{B}@v1.0.1", "-m", "Registering artifact")
    writer.assign(registry, B, "prod", "v1.0.1")


@pytest.mark.parametrize("mode", ["embedded", "sidecar"])
def test_a_package_with_a_symlink_out_of_it_never_holds_back_another_model(
    mode: str, registry: GitRegistry, tmp_path: Path
) -> None:
    with gateway(mode, registry.path, tmp_path / "cache") as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        _commit_symlink_version(registry)
        wait_until(lambda: "outside the package" in _b_error(server), 30, "B's error in /models")
        assert "v1.0.1" in _b_error(server) and "evil" in _b_error(server)
        lags = [_swap_lag_s(registry, server) for _ in range(2)]
        # The broken model keeps serving its last good version.
        assert _serves(server, B) == "v1.0.0"
        sync = server.get("/models").body["sync"]
        assert sync["result"] == "partial"
    print(f"{mode}: {A} swapped {lags} s after assign while {B}@v1.0.1 is broken")


def test_the_sidecar_survives_a_broken_package_and_keeps_syncing(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    with sidecar(registry.path, cache) as proc:
        _commit_symlink_version(registry)
        writer.assign(registry, A, "prod", "v1.1.0")

        def a_synced() -> bool:
            snap = json.loads((cache / "snapshot.json").read_text())
            return any(e["model"] == A and e["version"] == "v1.1.0" for e in snap["entries"])

        wait_until(a_synced, 30, f"{A}@v1.1.0 in the snapshot")
        assert proc.poll() is None, "the sync process exited"
        snap = json.loads((cache / "snapshot.json").read_text())
        assert {(e["model"], e["version"]) for e in snap["entries"]} == {
            (A, "v1.1.0"),
            (B, "v1.0.0"),
        }
        assert [(e["model"], e["version"]) for e in snap["errors"]] == [(B, "v1.0.1")]


def test_a_loop_failure_is_counted_shown_and_the_loop_goes_on(
    registry: GitRegistry, tmp_path: Path
) -> None:
    """An unwritable snapshot (here: a directory in its place) fails the loop, not the sync."""
    cache = tmp_path / "cache"
    (cache / "snapshot.json").mkdir(parents=True)
    (cache / "snapshot.json" / "blocker").write_text("x")
    metrics_port = free_port()
    args = ("--metrics-port", str(metrics_port))
    with (
        sidecar(registry.path, cache, args=args, wait_for_snapshot=False) as proc,
        ServerProcess(cache) as server,
    ):

        def loop_failures() -> int:
            sync = server.get("/models").body["sync"] or {}
            return int(sync.get("loop_failures", 0))

        wait_until(lambda: loop_failures() >= 1, 30, "the loop failure in /models")
        assert proc.poll() is None, "the sync process exited"
        sync = server.get("/models").body["sync"]
        assert "snapshot.json" in sync["last_loop_failure"]
        ready = server.get("/readyz")
        assert ready.status == 503  # nothing to answer with yet
        assert ready.body["error"]["details"]["sync"]["loop_failures"] >= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            text = resp.read().decode()
        counted = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("stageserve_sync_loop_failures_total ")
        ]
        assert counted and counted[0] >= 1
        # The disk is fixed: the loop, still running, writes the snapshot and all is served.
        shutil.rmtree(cache / "snapshot.json")
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness after the fix")
        assert _serves(server, A) == "v1.0.0"
        assert server.get("/readyz").body["sync"]["loop_failures"] >= 1


def _big_version(registry: GitRegistry, packages: dict[str, Path], tmp_path: Path) -> None:
    """other@v1.0.2: a valid package with a 3 MiB extra file (more than the disk holds)."""
    folder = tmp_path / "b-big"
    shutil.copytree(packages["b1"], folder)
    blob = folder / "weights.bin"
    blob.write_bytes(os.urandom(3 * 1024 * 1024))
    manifest = read_package(folder).manifest
    files = [*manifest.files, FileEntry(path="weights.bin", sha256=sha256_file(blob),
                                        size_bytes=blob.stat().st_size)]  # fmt: skip
    write_manifest(msgspec.structs.replace(manifest, files=files), folder)
    writer.register(registry, B, folder, version="v1.0.2")
    writer.assign(registry, B, "prod", "v1.0.2")


def test_a_full_cache_disk_is_the_failing_models_error_and_others_keep_swapping(
    registry: GitRegistry, packages: dict[str, Path], tmp_path: Path
) -> None:
    """A real ENOSPC: the embedded gateway runs in a user+mount namespace whose cache is a
    1 MiB tmpfs (skipped where unprivileged namespaces are not allowed)."""
    cache = tmp_path / "small-disk"
    cache.mkdir()
    launcher = tmpfs_launcher(cache, size_kib=1024)
    if launcher is None:
        pytest.skip("cannot mount a tmpfs in an unprivileged user namespace here")
    with gateway("embedded", registry.path, cache, launcher=launcher) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        _big_version(registry, packages, tmp_path)
        wait_until(lambda: "No space left" in _b_error(server), 30, "ENOSPC in B's errors")
        lag = _swap_lag_s(registry, server)
        assert _serves(server, B) == "v1.0.0"
    print(f"full disk: {A} swapped {lag:.2f} s after assign while {B}@v1.0.2 cannot be written")


def test_a_dangling_tag_is_skipped_and_reported_everything_else_syncs(
    registry: GitRegistry, tmp_path: Path
) -> None:
    """A tag ref to a missing object (a push cut short) used to stop the sync of every model
    and every registry command."""
    with gateway("embedded", registry.path, tmp_path / "cache") as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        (registry.path / ".git" / "refs" / "tags" / f"{B}#prod#7").write_text("ab" * 20 + "\n")
        wait_until(lambda: "missing object" in _b_error(server), 30, "the bad tag in /models")
        lag = _swap_lag_s(registry, server)
        assert _serves(server, B) == "v1.0.0"
        assert server.get("/models").body["sync"]["result"] == "partial"
    listed = stageserve("registry", "list", "--registry", str(registry.path), "--json")
    assert listed.returncode == 0, listed.stderr
    assert {m["name"] for m in json.loads(listed.stdout)} == {A, B}
    assert f"{B}#prod#7" in listed.stderr  # warned, once
    check = stageserve("registry", "check", "--registry", str(registry.path))
    assert check.returncode == 1
    assert f"{B}#prod#7" in check.stdout + check.stderr
    print(f"dangling tag: {A} swapped {lag:.2f} s after assign")
