"""One sync pass over a real git registry: resolve, materialize, verify, keep last good."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

import pytest

from registry_sync.errors import NotARegistryError
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.sync.loop import SyncLoop
from registry_sync.sync.setup import build_sync
from registry_sync.sync.snapshot import SNAPSHOT_FILE, STATUS_FILE, read_snapshot, read_status
from tests.registry_packages import git, init_registry, write_package


@pytest.fixture
def registry(tmp_path: Path) -> GitRegistry:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    for version, payload in (("v1.0.0", b"weights one"), ("v1.1.0", b"weights two")):
        pkg = write_package(tmp_path / f"pkg-{version}", payload=payload)
        writer.register(reg, "cost_predictor", pkg, version=version)
    writer.assign(reg, "cost_predictor", "prod", "v1.0.0")
    writer.assign(reg, "cost_predictor", "dev", "v1.1.0")
    return reg


def test_sync_materializes_each_assigned_version_into_its_own_verified_folder(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    state = build_sync(str(registry.path), cache).run_once()

    served = {(e.stage, e.version): Path(e.package_path) for e in state.entries}
    assert set(served) == {("prod", "v1.0.0"), ("dev", "v1.1.0")}
    for (_, version), folder in served.items():
        assert folder.parent == (cache / "cost_predictor").resolve()
        assert folder.name.startswith(f"{version}-")
        assert (folder / "model.yaml").is_file()
    prod = next(e for e in state.entries if e.stage == "prod")
    manifest_bytes = (Path(prod.package_path) / "model.yaml").read_bytes()
    assert prod.digest == "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    assert state.errors == []


def test_materialized_versions_are_reused_never_rewritten(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = build_sync(str(registry.path), cache).run_once()
    folder = Path(first.entries[0].package_path)
    marker = folder / "model.yaml"
    before = marker.stat().st_mtime_ns
    # A new process (fresh Materializer) must reuse the folder, not export it again.
    second = build_sync(str(registry.path), cache).run_once()
    assert second.entries == first.entries
    assert marker.stat().st_mtime_ns == before


def test_tampered_artifact_is_never_materialized_and_last_good_version_stays(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    sync = build_sync(str(registry.path), cache)
    sync.run_once()
    # Someone changes the artifact's bytes in git without updating model.yaml, and tags that
    # commit as a new version the way `gto register` would (gto checks no digests).
    repo = registry.path
    (repo / "models" / "cost_predictor" / "model.onnx").write_bytes(b"evil weight")
    git(repo, "commit", "-qam", "tamper")
    git(repo, "tag", "-a", "cost_predictor@v1.2.0", "-m", "Registering artifact")
    writer.assign(registry, "cost_predictor", "prod", "v1.2.0")

    state = sync.run_once()

    prod = next(e for e in state.entries if e.stage == "prod")
    assert prod.version == "v1.0.0"
    [error] = state.errors
    assert (error.model, error.stage, error.version) == ("cost_predictor", "prod", "v1.2.0")
    assert error.message.startswith("cost_predictor@v1.2.0: sha256 of 'model.onnx' is ")
    assert ".tmp-" not in error.message
    assert not list((cache / "cost_predictor").glob("v1.2.0*"))


def test_registry_that_disappears_is_a_failed_poll_and_changes_nothing(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    loop = SyncLoop(build_sync(str(registry.path), cache), cache, poll_interval_s=1.0)
    first = asyncio.run(loop.poll())
    assert first is not None
    shutil.move(registry.path, tmp_path / "moved-away")

    assert asyncio.run(loop.poll()) is None
    status = read_status(cache / STATUS_FILE)
    assert status.result == "error"
    assert "no longer exists" in status.message
    assert status.consecutive_failures == 1
    # Backoff: the next wait doubles after a second failure (jitter is at most 10%).
    asyncio.run(loop.poll())
    assert loop.next_delay_s() >= 1.8

    shutil.move(tmp_path / "moved-away", registry.path)
    again = asyncio.run(loop.poll())
    assert again is not None and again.entries == first.entries
    assert read_status(cache / STATUS_FILE).result == "ok"


def test_unreachable_remote_at_start_is_reported_not_raised_by_the_loop(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    sync = build_sync(f"file://{tmp_path}/nowhere.git", cache, mirror_dir=tmp_path / "mirror")
    loop = SyncLoop(sync, cache)
    assert asyncio.run(loop.poll()) is None
    assert "nowhere.git" in read_status(cache / STATUS_FILE).message


def test_remote_registry_is_synced_through_one_local_mirror(
    registry: GitRegistry, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--mirror", str(registry.path), str(remote))
    cache = tmp_path / "cache"
    sync = build_sync(f"file://{remote}", cache, mirror_dir=tmp_path / "mirror")
    assert {e.version for e in sync.run_once().entries} == {"v1.0.0", "v1.1.0"}
    writer.assign(registry, "cost_predictor", "prod", "v1.1.0")
    git(registry.path, "push", "-q", "--tags", str(remote))

    state = sync.run_once()
    assert {(e.stage, e.version) for e in state.entries} == {("prod", "v1.1.0"), ("dev", "v1.1.0")}
    # The mirror is kept apart from the cache (which a sidecar shares with the gateway).
    assert (tmp_path / "mirror" / "HEAD").is_file()
    assert not [p for p in cache.rglob("*") if p.name in ("HEAD", "config", "packed-refs")]


def test_unassigned_versions_are_garbage_collected_only_after_the_grace_period(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    sync = build_sync(str(registry.path), cache, gc_grace_s=3600)
    old = Path(next(e for e in sync.run_once().entries if e.stage == "prod").package_path)
    writer.assign(registry, "cost_predictor", "prod", "v1.1.0")
    sync.run_once()
    assert old.is_dir(), "a gateway may still be serving it: kept during the grace period"
    removed = sync.materializer.collect_garbage(set(), now=10**9)
    assert old in removed and not old.exists()


def test_stage_and_model_filters_limit_what_is_synced(
    registry: GitRegistry, tmp_path: Path
) -> None:
    state = build_sync(str(registry.path), tmp_path / "c", stages=["prod"]).run_once()
    assert [(e.model, e.stage) for e in state.entries] == [("cost_predictor", "prod")]
    state = build_sync(str(registry.path), tmp_path / "d", models=["other"]).run_once()
    assert state.entries == []


def test_changed_state_is_written_atomically_as_the_snapshot(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    loop = SyncLoop(build_sync(str(registry.path), cache), cache, poll_interval_s=0.05)

    async def first_update() -> None:
        stop = asyncio.Event()
        async for _ in loop.updates(stop):
            stop.set()

    asyncio.run(first_update())
    snapshot = read_snapshot(cache / SNAPSHOT_FILE)
    assert {e.version for e in snapshot.entries} == {"v1.0.0", "v1.1.0"}
    assert not [p for p in cache.iterdir() if p.name.startswith(".snapshot")]


def test_local_registry_that_is_not_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotARegistryError, match="plain"):
        build_sync(str(tmp_path / "plain"), tmp_path / "cache").run_once()


def test_fetching_and_verifying_a_new_version_report_their_bytes_and_durations(
    registry: GitRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, "stageserve.progress")
    sync = build_sync(str(registry.path), tmp_path / "cache")
    sync.run_once()
    done = {
        r.fields["task"]: r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.fields["event"] == "done"  # type: ignore[attr-defined]
    }
    # write_package's artifacts: b"weights one" (11 bytes) and b"weights two".
    verify = done["verify cost_predictor v1.0.0"]
    assert verify["bytes"] == len(b"weights one") and verify["model"] == "cost_predictor"
    fetch = done["fetch cost_predictor v1.1.0"]
    assert fetch["bytes"] > len(b"weights two")  # the artifact and model.yaml
    caplog.clear()
    sync.run_once()  # nothing new: nothing fetched, nothing reported
    assert caplog.records == []
