"""Registry queries: list, show, which (now or at a time), history, and stage resolution."""

from __future__ import annotations

import math
from collections.abc import Sequence

from registry_sync.errors import ManifestError, NoVersionInStageError
from registry_sync.registry.events import PRIORITY, ArtifactState, Event, VersionState
from registry_sync.registry.gto_tags import TagKind
from registry_sync.registry.repository import RegistryRepo, RegistryView
from registry_sync.registry.views import (
    HistoryEvent,
    ModelDetail,
    ModelSummary,
    RefusedAssignment,
    ResolvedStage,
    StageAssignment,
    StageResolution,
    TagSignature,
    VersionInfo,
    iso_time,
)

__all__ = [
    "history",
    "list_models",
    "refused_assignments",
    "resolve_stages",
    "show",
    "signer_of",
    "which",
]


def list_models(
    reg: RegistryRepo,
    *,
    label: str | None = None,
    search: str | None = None,
    deprecated: bool = False,
) -> list[ModelSummary]:
    view = reg.view()
    found = []
    for name in sorted(view.state):
        art = view.state[name]
        if art.deprecated and not deprecated:
            continue
        description, labels = _about(reg, view, art)
        if label is not None and label not in labels:
            continue
        needle = (search or "").lower()
        if needle and needle not in name.lower() and needle not in description.lower():
            continue
        latest = art.latest()
        found.append(
            ModelSummary(
                name=name,
                latest=latest.version if latest else None,
                stages=_stages(art),
                description=description,
                labels=labels,
                deprecated=art.deprecated,
            )
        )
    return found


def show(reg: RegistryRepo, name: str) -> ModelDetail:
    view = reg.view()
    art = view.artifact(name)
    stages = _stages(art)
    versions = [
        VersionInfo(
            version=v.version,
            commit=v.commit,
            registered_at=iso_time(max(e.time for e in v.registrations)),
            active=v.is_active,
            stages=sorted(s for s, ver in stages.items() if ver == v.version),
            author=v.registrations[-1].author,
        )
        for v in art.registered_versions()
    ]
    latest = art.latest()
    description, labels = _about(reg, view, art)
    manifest = None
    if latest is not None:
        try:
            manifest = reg.manifest_at(name, latest.commit)
        except ManifestError:
            manifest = None
    return ModelDetail(
        name=name,
        path=reg.package_path(name, latest.commit) if latest else f"{reg.models_dir}/{name}",
        deprecated=art.deprecated,
        latest=latest.version if latest else None,
        stages=stages,
        versions=versions,
        description=description,
        labels=labels,
        format=manifest.format if manifest else None,
        card=manifest.card if manifest else None,
        signature=manifest.signature if manifest else None,
        assignments=_assignments(view, art),
        untrusted=refused_assignments(reg, models=[name]) if reg.trust is not None else [],
    )


def _assignments(view: RegistryView, art: ArtifactState) -> list[StageAssignment]:
    """The assignment tag each stage follows (under a trust policy: the trusted one)."""
    signed = {tag.name: tag.signed for tag in view.tags}
    found = []
    for stage in art.stages():
        version = art.resolve(stage)
        assigns = [e for e in (version.stages.get(stage, []) if version else []) if e.tag]
        assigns = [e for e in assigns if e.kind == TagKind.ASSIGN]
        if version is None or not assigns:
            continue
        event = max(assigns, key=lambda e: e.time)
        found.append(
            StageAssignment(
                stage=stage,
                version=version.version,
                tag=event.tag or "",
                assigned_at=iso_time(event.time),
                author=event.author,
                author_email=event.author_email,
                signed=signed.get(event.tag or "", False),
                signature=_signature(view, event),
            )
        )
    return found


def _signature(view: RegistryView, event: Event) -> TagSignature | None:
    """What the event's tag signature proves under the view's trust policy (None: the
    policy does not apply to it, or there is none)."""
    check = view.checks.get(event.tag or "")
    if check is None:
        return None
    who = f"{check.signer} ({check.key})" if check.signer and check.key else check.key
    return TagSignature(status=check.status, signed_by=who or check.signer, reason=check.reason)


def which(reg: RegistryRepo, name: str, stage: str, *, at: float | None = None) -> StageResolution:
    """The version serving `stage` now, or at unix time `at`: over the events stamped in
    whole seconds before it (one in the very second of `at` may have come after it)."""
    at = None if at is None else math.floor(at)
    view = reg.view(at=at)
    if name not in view.state:
        if at is not None and name in reg.view().state:
            raise NoVersionInStageError(name, stage, iso_time(at))
        view.artifact(name)
    found = view.state[name].resolve(stage)
    if found is None:
        raise NoVersionInStageError(name, stage, iso_time(at) if at is not None else None)
    return StageResolution(
        model=name,
        stage=stage,
        version=found.version,
        commit=found.commit,
        assigned_at=iso_time(found.assigned_at(stage)),
        at=iso_time(at) if at is not None else None,
        signed_by=signer_of(view, found, stage),
    )


def signer_of(view: RegistryView, version: VersionState, stage: str) -> str | None:
    """Who signed the assignment that put `version` in `stage` (checked under the trust
    policy: None when the stage is not protected or no policy is given)."""
    assigns = [e for e in version.stages.get(stage, []) if e.kind == TagKind.ASSIGN and e.tag]
    if not assigns:
        return None
    check = view.checks.get(max(assigns, key=lambda e: e.time).tag or "")
    return check.describe().removeprefix("signed by ") if check and check.trusted else None


def history(reg: RegistryRepo, name: str | None = None) -> list[HistoryEvent]:
    """Every tag event, oldest first (gto history's order: time, then event priority), with
    whether its tag is signed; under a trust policy, also what each signature proves where
    the policy applies (refused tags are listed too: they are history)."""
    view = reg.view(trusted=False)
    checked = reg.view() if reg.trust is not None else view
    signed = {tag.name: tag.signed for tag in view.tags}
    if name is not None:
        view.artifact(name)
    state = view.state
    events = []
    for art in state.values():
        if name is not None and art.name != name:
            continue
        for version in art.versions:
            for event in version.all_events():
                if event.tag is not None:
                    events.append(event)
        events.extend(art.deprecations)
    events.sort(key=lambda e: (e.time, PRIORITY[e.kind], e.counter or 0, e.tag or ""))
    return [
        HistoryEvent(
            time=iso_time(e.time),
            event=e.kind,
            model=e.model,
            commit=e.commit,
            tag=e.tag or "",
            version=e.version,
            stage=e.stage,
            author=e.author,
            author_email=e.author_email,
            message=e.message,
            signed=signed.get(e.tag or "", False),
            signature=_signature(checked, e),
        )
        for e in events
    ]


def resolve_stages(
    reg: RegistryRepo,
    *,
    stages: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    view: RegistryView | None = None,
) -> list[ResolvedStage]:
    """Every (model, stage) that resolves to a version, for the sync loop."""
    view = view or reg.view()
    found = []
    for name in sorted(view.state):
        if models is not None and name not in models:
            continue
        art = view.state[name]
        for stage in art.stages():
            if stages is not None and stage not in stages:
                continue
            version = art.resolve(stage)
            if version is not None:
                signer = signer_of(view, version, stage)
                found.append(ResolvedStage(name, stage, version.version, version.commit, signer))
    return found


def refused_assignments(
    reg: RegistryRepo, *, stages: Sequence[str] | None = None, models: Sequence[str] | None = None
) -> list[RefusedAssignment]:
    """Stage tags of protected stages not followed for want of a trusted signature, that
    would otherwise have changed what serves (newer than the newest trusted stage event),
    and deregistrations and deprecations that would have taken a protected stage's version
    out of service."""
    view = reg.view()
    found = []
    for event, check in view.refused:
        stage = str(event.stage)
        if (models is not None and event.model not in models) or (
            stages is not None and stage not in stages
        ):
            continue
        art = view.state.get(event.model)
        trusted = [e.time for v in (art.versions if art else []) for e in v.stages.get(stage, [])]
        withdrawal = event.kind in (TagKind.DEREGISTER, TagKind.DEPRECATE)
        if trusted and event.time < max(trusted) and not withdrawal:
            # Superseded by a trusted stage event anyway (a withdrawal is only refused while
            # it would take what serves out of service, so it is never superseded).
            continue
        serving = art.resolve(stage) if art else None
        found.append(
            RefusedAssignment(
                model=event.model,
                stage=stage,
                tag=event.tag or "",
                event=event.kind,
                version=(
                    serving.version
                    if event.kind == TagKind.DEPRECATE and serving
                    else event.version or _version_at(view, event.model, event.commit)
                ),
                time=iso_time(event.time),
                status=check.status,
                reason=check.reason,
                serving=serving.version if serving else None,
                serving_signed_by=signer_of(view, serving, stage) if serving else None,
            )
        )
    return found


def _version_at(view: RegistryView, model: str, commit: str) -> str | None:
    art = view.state.get(model)
    for version in art.registered_versions() if art else []:
        if version.commit == commit:
            return version.version
    return None


def _about(reg: RegistryRepo, view: RegistryView, art: ArtifactState) -> tuple[str, list[str]]:
    """Description and labels: artifacts.yaml at HEAD, else the latest version's commit."""
    entry = view.artifacts.get(art.name)
    if entry is None and (latest := art.latest()) is not None:
        entry = reg.artifacts_at(latest.commit).get(art.name)
    entry = entry or {}
    labels = entry.get("labels") or []
    return str(entry.get("description") or ""), [str(x) for x in labels]


def _stages(art: ArtifactState) -> dict[str, str]:
    found = {}
    for stage in art.stages():
        version = art.resolve(stage)
        if version is not None:
            found[stage] = version.version
    return found
