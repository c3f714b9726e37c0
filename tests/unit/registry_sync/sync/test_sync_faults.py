"""Faults inside one package, in the cache or in the loop: reported, never fatal to the sync."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.sync import materialize
from registry_sync.sync.loop import SyncLoop
from registry_sync.sync.registry_sync import RegistrySync
from registry_sync.sync.setup import build_sync, watch_path_for
from registry_sync.sync.snapshot import STATUS_FILE, read_status
from registry_sync.sync.stop import own_stop_event
from tests.registry_packages import git, init_registry, write_package

A, B = "cost_predictor", "other"


@pytest.fixture
def registry(tmp_path: Path) -> GitRegistry:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    writer.register(reg, A, write_package(tmp_path / "a1", A, payload=b"a one"), version="v1.0.0")
    writer.register(reg, A, write_package(tmp_path / "a2", A, payload=b"a two"), version="v1.1.0")
    writer.register(reg, B, write_package(tmp_path / "b1", B, payload=b"b one"), version="v1.0.0")
    writer.assign(reg, A, "prod", "v1.0.0")
    writer.assign(reg, B, "prod", "v1.0.0")
    return reg


def _versions(sync: RegistrySync) -> dict[str, str]:
    return {e.model: e.version for e in sync.run_once().entries}


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../outside"])
def test_a_symlink_out_of_a_package_is_that_models_error_only(
    registry: GitRegistry, tmp_path: Path, target: str
) -> None:
    sync = build_sync(str(registry.path), tmp_path / "cache")
    sync.run_once()
    (registry.path / "models" / B / "link").symlink_to(target)
    git(registry.path, "add", "-A")
    git(registry.path, "commit", "-qm", "link")
    git(registry.path, "tag", "-a", f"{B}@v1.0.1", "-m", "Registering artifact")
    writer.assign(registry, B, "prod", "v1.0.1")
    writer.assign(registry, A, "prod", "v1.1.0")

    state = sync.run_once()

    assert {e.model: e.version for e in state.entries} == {A: "v1.1.0", B: "v1.0.0"}
    [error] = state.errors
    assert (error.model, error.version) == (B, "v1.0.1")
    assert f"'link' is a link to {target!r}, outside the package" in error.message
    assert not list((tmp_path / "cache" / B).glob("v1.0.1*"))


class _FailingExporter:
    """The real registry, except that exporting `model` raises `error` (a unit-test seam:
    the end-to-end test of a real full disk is tests/integration/test_sync_faults.py)."""

    def __init__(self, sync: RegistrySync, model: str, error: Exception) -> None:
        self.inner = sync.reader
        self.model = model
        self.error = error

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def export_package(self, name: str, version: str, dest: Path) -> Path:
        if name == self.model:
            dest.mkdir(parents=True, exist_ok=True)
            raise self.error
        return self.inner.export_package(name, version, dest)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/cache/other/.tmp-x/model.onnx"),
            "No space left on device (errno 28)",
        ),
        (RuntimeError("a bug"), "RuntimeError: a bug"),
    ],
)
def test_any_failure_while_materializing_one_model_is_that_models_error(
    registry: GitRegistry, tmp_path: Path, error: Exception, expected: str
) -> None:
    sync = build_sync(str(registry.path), tmp_path / "cache")
    sync.run_once()
    writer.assign(registry, B, "prod", "v1.0.0")  # unchanged, but B must be materialized anew
    fresh = build_sync(str(registry.path), tmp_path / "cache2")
    fresh.reader = _FailingExporter(fresh, B, error)  # type: ignore[assignment]

    state = fresh.run_once()

    assert {e.model for e in state.entries} == {A}
    [failed] = state.errors
    assert failed.model == B and expected in failed.message
    assert not [p for p in (tmp_path / "cache2" / B).iterdir() if p.name.startswith(".tmp-")]


def test_an_unexpected_error_is_a_counted_loop_failure_and_the_loop_goes_on(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    loop = SyncLoop(build_sync(str(registry.path), cache), cache, poll_interval_s=0.01)
    real = loop.sync.run_once
    calls = 0

    def flaky() -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("not a RegistryError")
        return real()

    loop.sync.run_once = flaky  # type: ignore[method-assign]

    async def first_update() -> None:
        stop = asyncio.Event()
        async for _ in loop.updates(stop):
            stop.set()

    asyncio.run(first_update())
    assert calls == 2
    status = read_status(cache / STATUS_FILE)
    assert status.result == "ok"
    assert status.loop_failures == 1
    assert status.last_loop_failure == "ValueError: not a RegistryError"


def test_closing_the_loop_never_sets_its_callers_stop_event(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    watched = watch_path_for(str(registry.path))
    assert watched is not None
    loop = SyncLoop(build_sync(str(registry.path), cache), cache, watch_path=watched)

    async def run() -> bool:
        stop = asyncio.Event()
        updates = loop.updates(stop)
        await anext(updates)
        await asyncio.sleep(0)  # let the watcher start
        await updates.aclose()  # cancels the watcher, which sets the event it was given
        return stop.is_set()

    assert asyncio.run(run()) is False


def test_own_stop_event_follows_its_parent() -> None:
    async def run() -> tuple[bool, bool]:
        parent = asyncio.Event()
        async with own_stop_event(parent) as own:
            before = own.is_set()
            parent.set()
            await asyncio.wait_for(own.wait(), 5)
        return before, own.is_set()

    assert asyncio.run(run()) == (False, True)


# -- a corrupted cache copy is repaired from the registry --------------------------------------


def _corrupt(folder: Path) -> None:
    (folder / "model.onnx").write_bytes(b"bit rot")


def test_a_corrupted_copy_is_replaced_after_a_restart(
    registry: GitRegistry, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    folder = Path(build_sync(str(registry.path), cache).run_once().entries[0].package_path)
    _corrupt(folder)

    restarted = build_sync(str(registry.path), cache)
    state = restarted.run_once()

    assert state.errors == []
    assert Path(state.entries[0].package_path) == folder
    assert (folder / "model.onnx").read_bytes() == b"a one"
    assert restarted.materializer.take_repaired() == [folder]


def test_a_changed_file_is_found_by_the_cheap_check_and_repaired(
    registry: GitRegistry, tmp_path: Path
) -> None:
    sync = build_sync(str(registry.path), tmp_path / "cache")
    folder = Path(sync.run_once().entries[0].package_path)
    _corrupt(folder)
    assert sync.run_once().errors == []
    assert (folder / "model.onnx").read_bytes() == b"a one"
    (folder / "model.onnx").unlink()
    assert sync.run_once().errors == []
    assert (folder / "model.onnx").read_bytes() == b"a one"


def test_a_touched_but_intact_copy_is_reused(registry: GitRegistry, tmp_path: Path) -> None:
    sync = build_sync(str(registry.path), tmp_path / "cache")
    folder = Path(sync.run_once().entries[0].package_path)
    inode = (folder / "model.onnx").stat().st_ino
    os.utime(folder / "model.onnx")
    sync.run_once()
    assert (folder / "model.onnx").stat().st_ino == inode
    assert sync.materializer.take_repaired() == []


def test_a_full_check_on_request_finds_what_the_cheap_check_cannot(
    registry: GitRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = build_sync(str(registry.path), tmp_path / "cache")
    folder = Path(sync.run_once().entries[0].package_path)
    # Media corruption leaves size and times alone: make the cheap check see no change.
    monkeypatch.setattr(materialize, "_fingerprint", lambda _folder, _files: ())
    sync.run_once()
    _corrupt(folder)
    sync.run_once()
    assert (folder / "model.onnx").read_bytes() == b"bit rot"  # the documented blind spot

    sync.materializer.request_full_check(folder)
    sync.run_once()
    assert (folder / "model.onnx").read_bytes() == b"a one"


# -- a tag pointing at a missing object is skipped and reported ------------------------------


def _dangle(repo: Path, tag: str, *, annotated: bool) -> None:
    """A tag whose object is missing: the ref itself (`annotated=False`), or an annotated tag
    object whose commit is missing (what a push cut short can leave behind)."""
    missing = "1234567" * 5 + "12345"
    if annotated:
        body = f"object {missing}\ntype commit\ntag {tag}\ntagger T <t@e> 1700000000 +0000\n\nx\n"
        done = subprocess.run(
            ["git", "-C", str(repo), "hash-object", "-t", "tag", "-w", "--stdin", "--literally"],
            input=body, capture_output=True, text=True, check=True,
        )  # fmt: skip
        missing = done.stdout.strip()
    (repo / ".git" / "refs" / "tags" / tag).write_text(missing + "\n")


@pytest.mark.parametrize("annotated", [False, True])
def test_a_dangling_tag_holds_only_what_it_may_concern_and_is_reported(
    registry: GitRegistry, tmp_path: Path, annotated: bool
) -> None:
    sync = build_sync(str(registry.path), tmp_path / "cache")
    sync.run_once()
    _dangle(registry.path, f"{B}#prod#9", annotated=annotated)
    writer.assign(registry, A, "prod", "v1.1.0")

    state = sync.run_once()

    assert {e.model: e.version for e in state.entries} == {A: "v1.1.0", B: "v1.0.0"}
    [error] = state.errors
    assert (error.model, error.stage) == (B, "prod")
    assert f"tag '{B}#prod#9' points to a missing object" in error.message


def test_a_dangling_version_tag_holds_every_stage_of_its_model(
    registry: GitRegistry, tmp_path: Path
) -> None:
    writer.assign(registry, B, "dev", "v1.0.0")
    sync = build_sync(str(registry.path), tmp_path / "cache")
    sync.run_once()
    _dangle(registry.path, f"{B}@v9.9.9", annotated=False)
    state = sync.run_once()
    assert {(e.model, e.stage) for e in state.entries} == {(A, "prod"), (B, "prod"), (B, "dev")}
    assert [(e.model, e.stage, e.version) for e in state.errors] == [(B, None, "v9.9.9")]


def test_registry_queries_skip_a_dangling_tag_and_check_names_it(registry: GitRegistry) -> None:
    from registry_sync.registry.check import check_registry

    _dangle(registry.path, f"{B}#prod#9", annotated=False)
    _dangle(registry.path, "release-2020", annotated=True)
    assert {m.name for m in registry.list_models()} == {A, B}
    report = check_registry(registry)
    dangling = [p for p in report.problems if "missing object" in p.message]
    assert {p.subject for p in dangling} == {f"{B}#prod#9", "release-2020"}


def test_garbage_collection_removes_only_package_folders_never_a_mirror(
    registry: GitRegistry, tmp_path: Path
) -> None:
    """The default cache ($XDG_CACHE_HOME/stageserve) also holds the registry mirrors."""
    cache = tmp_path / "cache"
    sync = build_sync(str(registry.path), cache, gc_grace_s=3600)
    sync.run_once()
    mirror = cache / "mirrors" / "models.git-0123456789ab"
    git(tmp_path, "init", "-q", "--bare", str(mirror))
    old = Path(next(e for e in sync.run_once().entries if e.model == A).package_path)
    writer.assign(registry, A, "prod", "v1.1.0")
    sync.run_once()
    removed = sync.materializer.collect_garbage(set(), now=10**9)
    assert old in removed and not old.exists()
    assert (mirror / "HEAD").is_file()
