"""<cache>/registry-history.json: kept by the sync for the console, never a reason to stop."""

from __future__ import annotations

from pathlib import Path

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.views import RefusedAssignment
from registry_sync.sync.history import HistoryRecorder, read_history
from registry_sync.sync.reader import open_reader
from registry_sync.sync.snapshot import ModelSyncError
from tests.registry_packages import init_registry, write_package


def test_the_file_holds_the_history_and_every_refusal_and_is_rewritten_only_on_change(
    tmp_path: Path,
) -> None:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    writer.register(reg, "m", write_package(tmp_path / "p"), version="v1.0.0")
    writer.assign(reg, "m", "prod", "v1.0.0")
    path = tmp_path / "cache" / "registry-history.json"
    path.parent.mkdir()
    reader = open_reader(str(reg.path), mirror_dir=tmp_path / "mirrors")
    recorder = HistoryRecorder(path, reader)
    broken = ModelSyncError(model="m", stage="prod", version="v2.0.0", message="digest", at="t1")
    unsigned = RefusedAssignment(
        model="m",
        stage="prod",
        tag="m#prod#9",
        version="v1.0.0",
        time="2026-01-01T00:00:00Z",
        status="unsigned",
        reason="no signature",
    )
    recorder.record("2026-01-01T00:00:01Z", [broken], [unsigned])
    first = read_history(path)
    assert first.registry is not None and first.registry.models[0].name == "m"
    assert [(r.version, r.first_at) for r in first.refusals] == [
        ("v1.0.0", "2026-01-01T00:00:00Z"),
        ("v2.0.0", "t1"),
    ]
    # The same error on a later poll: the refusal keeps its first time, gains its last.
    later = ModelSyncError(model="m", stage="prod", version="v2.0.0", message="digest", at="t2")
    recorder.record("2026-01-01T00:00:09Z", [later], [unsigned])
    refusal = read_history(path).refusals[1]
    assert (refusal.first_at, refusal.last_at) == ("t1", "t2")
    # Nothing but the poll's time changed: the file is not rewritten.
    path.write_bytes(path.read_bytes() + b" ")  # a marker a rewrite would remove
    recorder.record("2026-01-01T00:00:19Z", [later], [unsigned])
    assert path.read_bytes().endswith(b" ")
    # A fresh recorder (a restarted sidecar) keeps what the file already knew.
    again = HistoryRecorder(path, reader)
    again.record("2026-01-01T00:00:10Z", [], [])
    assert {r.version for r in read_history(path).refusals} == {"v1.0.0", "v2.0.0"}


def test_a_broken_cache_folder_is_logged_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "not-a-folder" / "registry-history.json"
    (tmp_path / "not-a-folder").write_text("a file where the folder should be")
    HistoryRecorder(path, object()).record("now", [], [])  # no reader, no folder: no raise
