"""One pass of registry sync: resolve every (model, stage), materialize, build the snapshot.

`RegistrySync.run_once()` is synchronous and does the git work; the loop around it
(`sync_loop.py`) decides when to call it. A model whose new version cannot be fetched,
verified or read keeps its last good entry and is reported in `DesiredState.errors`, so one
broken package never takes another model (or the serving version of itself) down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from registry_sync.errors import PackageError, RegistryError
from registry_sync.registry.git import DanglingRef
from registry_sync.registry.gto_tags import check_servable_name, parse_tag
from registry_sync.registry.views import RefusedAssignment, ResolvedStage
from registry_sync.sync.materialize import Materializer, PackageExporter
from registry_sync.sync.snapshot import (
    SNAPSHOT_FILE,
    DesiredEntry,
    DesiredState,
    ModelSyncError,
    read_snapshot,
)

__all__ = ["RegistryReader", "RegistrySync", "utc_now_iso"]

log = logging.getLogger(__name__)


class RegistryReader(PackageExporter, Protocol):
    """What the sync loop needs from a registry (GitRegistry provides it)."""

    @property
    def display_location(self) -> str:
        """Where the registry is, safe to log (no credentials)."""
        ...

    def refresh(self) -> None:
        """Bring a remote registry's local mirror up to date (no-op for a local path)."""
        ...

    def resolve_stages(
        self, *, stages: Sequence[str] | None = None, models: Sequence[str] | None = None
    ) -> list[ResolvedStage]: ...


@runtime_checkable
class TrustingReader(Protocol):
    """A reader that applies a trust policy (GitRegistry's): it also reports what it refused."""

    def refused_assignments(
        self, *, stages: Sequence[str] | None = None, models: Sequence[str] | None = None
    ) -> list[RefusedAssignment]: ...


@runtime_checkable
class SkipsDanglingRefs(Protocol):
    """A reader that skips tags pointing at missing objects and says which (GitRegistry's)."""

    skipped_refs: list[DanglingRef]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class RegistrySync:
    reader: RegistryReader
    materializer: Materializer
    stages: Sequence[str] | None = None
    models: Sequence[str] | None = None
    _last_good: dict[tuple[str, str], DesiredEntry] = field(default_factory=dict)
    _untrusted_seen: set[str] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        reader: RegistryReader,
        cache_dir: Path,
        *,
        stages: Sequence[str] | None = None,
        models: Sequence[str] | None = None,
        gc_grace_s: float = 600.0,
    ) -> RegistrySync:
        sync = cls(reader, Materializer(cache_dir, gc_grace_s=gc_grace_s), stages, models)
        sync.seed_from_snapshot(cache_dir / SNAPSHOT_FILE)
        return sync

    def seed_from_snapshot(self, path: Path) -> None:
        """After a restart, the last snapshot on disk is the last good state."""
        try:
            previous = read_snapshot(path)
        except FileNotFoundError:
            return
        except Exception as exc:  # a corrupt snapshot is no reason to stop syncing
            log.warning("ignoring unreadable snapshot %s: %s", path, exc)
            return
        self._remember(previous.entries)

    def run_once(self) -> DesiredState:
        """Raises RegistryError when the registry itself cannot be read (nothing changes)."""
        self.reader.refresh()
        resolved = self.reader.resolve_stages(stages=self.stages, models=self.models)
        entries: list[DesiredEntry] = []
        errors: list[ModelSyncError] = []
        held = self._hold_for_dangling_refs(errors)
        entries += [e for (m, s), e in self._last_good.items() if _is_held(held, m, s)]
        for item in resolved:
            if _is_held(held, item.model, item.stage):
                continue
            try:
                check_servable_name(item.model)  # gto allows '/', no route can carry it
                done = self.materializer.materialize(
                    self.reader, item.model, item.version, item.commit
                )
            except Exception as exc:
                # Whatever goes wrong inside one package (a bad manifest, a symlink out of the
                # package, a full disk, a bug) is that (model, stage)'s error: the others go on.
                message = f"{item.model}@{item.version}: {_reason(exc)}"
                log.error(
                    "cannot materialize for stage %s: %s",
                    item.stage,
                    message,
                    exc_info=not isinstance(exc, RegistryError),
                )
                errors.append(
                    ModelSyncError(
                        model=item.model,
                        stage=item.stage,
                        version=item.version,
                        message=message,
                        at=utc_now_iso(),
                    )
                )
                previous = self._last_good.get((item.model, item.stage))
                if previous is not None:
                    entries.append(previous)
                continue
            entries.append(
                DesiredEntry(
                    model=item.model,
                    stage=item.stage,
                    version=item.version,
                    package_path=str(done.path),
                    digest=done.digest,
                    signed_by=item.signed_by,
                )
            )
        entries.sort(key=lambda e: (e.model, e.stage))
        self._last_good = {}
        self._remember(entries)
        try:
            self.materializer.collect_garbage({Path(e.package_path) for e in entries})
        except OSError as exc:  # a folder that cannot be deleted now is retried next poll
            log.warning("cache garbage collection failed: %s", exc)
        return DesiredState(
            generated_at=utc_now_iso(),
            registry=self.reader.display_location,
            entries=entries,
            errors=errors,
            untrusted=self._untrusted(),
        )

    def _untrusted(self) -> list[RefusedAssignment]:
        """Assignments the trust policy refused; each is logged once, when first seen."""
        if not isinstance(self.reader, TrustingReader):
            return []
        found = self.reader.refused_assignments(stages=self.stages, models=self.models)
        for refused in found:
            if refused.tag not in self._untrusted_seen:
                log.warning("%s#%s: %s", refused.model, refused.stage, refused.describe())
        self._untrusted_seen = {r.tag for r in found}
        return found

    def _hold_for_dangling_refs(self, errors: list[ModelSyncError]) -> dict[str, set[str] | None]:
        """The (model, stages) a tag pointing at a missing object may concern: they keep their
        last good state (the registry's intent for them is unknown, and skipping the tag
        could roll a stage back), each reported; every other model syncs as usual.
        Returns model -> the stages held (None: all of them)."""
        held: dict[str, set[str] | None] = {}
        refs = self.reader.skipped_refs if isinstance(self.reader, SkipsDanglingRefs) else []
        for ref in refs:
            parsed = parse_tag(ref.name)
            if parsed is None:
                continue  # not a registry tag: nothing depends on it (`registry check` says it)
            if self.models is not None and parsed.name not in self.models:
                continue
            if parsed.stage and self.stages is not None and parsed.stage not in self.stages:
                continue
            stages = held.get(parsed.name, set())
            if parsed.stage is None or stages is None:
                held[parsed.name] = None
            else:
                held[parsed.name] = stages | {parsed.stage}
            what = f"stage {parsed.stage!r}" if parsed.stage else "every stage"
            errors.append(
                ModelSyncError(
                    model=parsed.name,
                    stage=parsed.stage,
                    version=parsed.version,
                    message=f"tag {ref.name!r} points to a missing object {ref.object[:12]}: "
                    f"skipped; {what} of {parsed.name} keeps its last good state until the "
                    "registry is repaired",
                    at=utc_now_iso(),
                )
            )
        return held

    def _remember(self, entries: Iterable[DesiredEntry]) -> None:
        for entry in entries:
            self._last_good[(entry.model, entry.stage)] = entry


def _is_held(held: dict[str, set[str] | None], model: str, stage: str) -> bool:
    if model not in held:
        return False
    stages = held[model]
    return stages is None or stage in stages


def _reason(exc: Exception) -> str:
    """The error without the temporary export folder it happened in (meaningless to users)."""
    text = str(exc)
    if isinstance(exc, PackageError) and text.startswith(f"{exc.path}: "):
        return text[len(exc.path) + 2 :]
    if not isinstance(exc, RegistryError):
        return f"{type(exc).__name__}: {text}"
    return text
