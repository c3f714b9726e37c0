"""SnapshotFileSource follows snapshot.json as `stageserve sync` replaces it (real files)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.pool.snapshot_source import SnapshotFileSource
from registry_sync.sync.snapshot import DesiredEntry, DesiredState, write_snapshot


def _state(version: str) -> DesiredState:
    e = DesiredEntry(
        model="cost", stage="prod", version=version, package_path="/p", digest="sha256:x"
    )
    return DesiredState(generated_at="2026-01-01T00:00:00Z", registry="tests", entries=[e])


def test_each_new_snapshot_is_yielded_and_a_malformed_one_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    write_snapshot(_state("v1"), path)
    seen: list[str] = []

    async def run() -> None:
        stop = asyncio.Event()
        source = SnapshotFileSource(tmp_path, recheck_ms=200)

        async def writer() -> None:
            await asyncio.sleep(0.3)
            (tmp_path / ".tmp").write_text("{not json")
            (tmp_path / ".tmp").replace(path)
            await asyncio.sleep(0.3)
            write_snapshot(_state("v2"), path)

        task = asyncio.create_task(writer())
        async for state in source.updates(stop):
            seen.append(state.entries[0].version)
            if len(seen) == 2:
                stop.set()
        await task

    asyncio.run(asyncio.wait_for(run(), 30))
    assert seen == ["v1", "v2"]


def test_a_missing_cache_folder_is_created_and_waited_on(tmp_path: Path) -> None:
    cache = tmp_path / "later"

    async def run() -> list[str]:
        stop = asyncio.Event()
        source = SnapshotFileSource(cache, recheck_ms=200)
        seen: list[str] = []

        async def writer() -> None:
            await asyncio.sleep(0.3)
            write_snapshot(_state("v7"), cache / "snapshot.json")

        task = asyncio.create_task(writer())
        async for state in source.updates(stop):
            seen.append(state.entries[0].version)
            stop.set()
        await task
        return seen

    assert asyncio.run(asyncio.wait_for(run(), 30)) == ["v7"]
