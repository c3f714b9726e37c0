"""A registry's history as the console shows it: every version with who registered it and
what its package says, and, per stage, the bands of time each version was assigned.

Built by the sync from the tags (so the gateway, which holds no registry credentials in the
sidecar mode, reads it from the cache): `RegistryHistory` holds no secrets and no input
values, only what `stageserve registry show/history` print. The bands follow the one
documented rule (`ArtifactState.resolve`, what `gto show` answers), evaluated just after each
event's second: an event stamped second S happened in [S, S+1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from registry_sync.errors import ManifestError
from registry_sync.package.manifest import Manifest
from registry_sync.registry.events import ArtifactState, fold
from registry_sync.registry.gto_tags import TagKind
from registry_sync.registry.repository import RegistryRepo
from registry_sync.registry.views import iso_time

__all__ = [
    "AssignedBand",
    "ModelHistory",
    "RegistryHistory",
    "StageEventRecord",
    "VersionRecord",
    "build_history",
]


class VersionRecord(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    commit: str
    registered_at: str | None
    # The tagger of the registration tag ("" when unknown, e.g. a version gto discovered).
    author: str = ""
    author_email: str = ""
    deregistered_at: str | None = None
    # From the version's model.yaml (None/empty when it has none or it cannot be read).
    format: str | None = None
    metrics: dict[str, float] = {}
    labels: list[str] = []
    card: dict[str, str] = {}
    signature: dict[str, Any] = {}


class StageEventRecord(msgspec.Struct, frozen=True, kw_only=True):
    at: str
    stage: str
    kind: str  # assignment, unassignment
    version: str | None
    author: str = ""
    tag: str = ""


class AssignedBand(msgspec.Struct, frozen=True, kw_only=True):
    """From `start` (inclusive) to `end` (exclusive; None: still so) `version` was assigned to
    `stage` (None: nothing was)."""

    stage: str
    version: str | None
    start: str
    end: str | None = None


class ModelHistory(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    labels: list[str] = []
    deprecated_at: str | None = None
    versions: list[VersionRecord] = []
    events: list[StageEventRecord] = []
    assigned: list[AssignedBand] = []


class RegistryHistory(msgspec.Struct, frozen=True, kw_only=True):
    generated_at: str
    registry: str
    models: list[ModelHistory] = []
    schema_version: int = 1


ManifestAt = Callable[[str, str], Manifest | None]


def build_history(
    reg: RegistryRepo,
    *,
    generated_at: str,
    stages: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    manifest_at: ManifestAt | None = None,
) -> RegistryHistory:
    """Read the tags once and fold them as of every event's second. `manifest_at(model,
    commit)` lets the caller cache manifests (a commit's files never change)."""
    view = reg.view()
    commit_times = {tag.commit: tag.commit_time for tag in view.tags}
    head = None
    if view.head is not None:
        head = (view.head, reg.git.commit_time(view.head), frozenset(view.artifacts))
    read_manifest = manifest_at or _reader(reg)
    found = []
    for name in sorted(view.state):
        if models is not None and name not in models:
            continue
        art = view.state[name]
        times = sorted({e.time for e in view.events if e.model == name})
        states = {t: fold(view.events, commit_times, head=head, at=t + 1).get(name) for t in times}
        entry = view.artifacts.get(name) or {}
        deprecations = [e.time for e in art.deprecations]
        found.append(
            ModelHistory(
                name=name,
                description=str(entry.get("description") or ""),
                labels=[str(x) for x in entry.get("labels") or []],
                deprecated_at=iso_time(max(deprecations)) if deprecations else None,
                versions=_versions(art, name, read_manifest),
                events=_stage_events(art, stages),
                assigned=_bands(art, states, stages),
            )
        )
    return RegistryHistory(generated_at=generated_at, registry=reg.display_location, models=found)


def _reader(reg: RegistryRepo) -> ManifestAt:
    def read(model: str, commit: str) -> Manifest | None:
        try:
            return reg.manifest_at(model, commit)
        except ManifestError:
            return None

    return read


def _versions(art: ArtifactState, name: str, manifest_at: ManifestAt) -> list[VersionRecord]:
    out = []
    for v in art.versions:
        if v.discovered:
            continue
        registration = max(v.registrations, key=lambda e: e.time) if v.registrations else None
        deregistered = max((e.time for e in v.deregistrations), default=None)
        manifest = manifest_at(name, v.commit)
        out.append(
            VersionRecord(
                version=v.version,
                commit=v.commit,
                registered_at=iso_time(registration.time) if registration else None,
                author=registration.author if registration else "",
                author_email=registration.author_email if registration else "",
                deregistered_at=(
                    iso_time(deregistered) if deregistered is not None and not v.is_active else None
                ),
                format=manifest.format if manifest else None,
                metrics=dict(manifest.metrics) if manifest else {},
                labels=list(manifest.labels) if manifest else [],
                card=msgspec.to_builtins(manifest.card) if manifest else {},
                signature=msgspec.to_builtins(manifest.signature) if manifest else {},
            )
        )
    return out


def _stage_events(art: ArtifactState, stages: Sequence[str] | None) -> list[StageEventRecord]:
    events = [
        e
        for v in art.versions
        for stage_events in v.stages.values()
        for e in stage_events
        if stages is None or e.stage in stages
    ]
    events.sort(key=lambda e: (e.time, e.counter or 0, e.tag or ""))
    return [
        StageEventRecord(
            at=iso_time(e.time),
            stage=str(e.stage),
            kind="assignment" if e.kind == TagKind.ASSIGN else "unassignment",
            version=e.version,
            author=e.author,
            tag=e.tag or "",
        )
        for e in events
    ]


def _bands(
    art: ArtifactState,
    states: dict[int, ArtifactState | None],
    stages: Sequence[str] | None,
) -> list[AssignedBand]:
    names = [s for s in art.stages() if stages is None or s in stages]
    bands: list[AssignedBand] = []
    for stage in names:
        current: tuple[str | None, int] | None = None
        for t, state in states.items():
            found = state.resolve(stage) if state is not None else None
            version = found.version if found is not None else None
            if current is not None and current[0] == version:
                continue
            if current is not None and current[0] is not None:
                bands.append(
                    AssignedBand(
                        stage=stage, version=current[0], start=iso_time(current[1]), end=iso_time(t)
                    )
                )
            current = (version, t)
        if current is not None and current[0] is not None:
            bands.append(AssignedBand(stage=stage, version=current[0], start=iso_time(current[1])))
    return bands
