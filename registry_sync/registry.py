"""`GitRegistry`: a git repository in GTO's tag format, read (here) and written (writer.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from registry_sync import writer
from registry_sync.errors import (
    ManifestError,
    ModelNotFoundError,
    NoVersionInStageError,
    VersionNotFoundError,
)
from registry_sync.events import PRIORITY, ArtifactState, Event, VersionState, fold
from registry_sync.git import Git, TagRecord, ensure_repo
from registry_sync.gto_tags import parse_tag
from registry_sync.manifest import Manifest
from registry_sync.registry_views import (
    HistoryEvent,
    ModelDetail,
    ModelSummary,
    StageResolution,
    VersionInfo,
    iso_time,
)
from registry_sync.remote import Mirror, default_mirror_dir, is_url
from registry_sync.sync import ResolvedStage

__all__ = ["ARTIFACTS_FILE", "CONFIG_FILE", "GitRegistry", "RegistryView"]

ARTIFACTS_FILE = "artifacts.yaml"
CONFIG_FILE = ".gto"


@dataclass(frozen=True)
class RegistryView:
    """Everything one query needs, read from git once."""

    tags: list[TagRecord]
    events: list[Event]
    head: str | None
    artifacts: dict[str, dict[str, Any]]  # artifacts.yaml at HEAD
    state: dict[str, ArtifactState]

    def artifact(self, name: str) -> ArtifactState:
        found = self.state.get(name)
        if found is None:
            raise ModelNotFoundError(name, sorted(self.state))
        return found


class GitRegistry:
    """A model registry in a git repository (a local path, or the mirror of a remote URL)."""

    def __init__(
        self,
        path: Path | str,
        *,
        models_dir: str = "models",
        mirror: Mirror | None = None,
        display: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.models_dir = models_dir.strip("/")
        self.mirror = mirror
        self.git = Git(self.path, display=display or str(path))
        ensure_repo(self.git)

    @classmethod
    def open(
        cls, location: str | Path, *, mirror_dir: Path | None = None, models_dir: str = "models"
    ) -> GitRegistry:
        """A local registry, or a remote one through its (created or fetched) local mirror."""
        text = str(location)
        if not is_url(text):
            return cls(Path(text), models_dir=models_dir)
        mirror = Mirror(text, mirror_dir or default_mirror_dir(text))
        mirror.update()
        return cls(mirror.folder, models_dir=models_dir, mirror=mirror, display=mirror.display)

    @property
    def display_location(self) -> str:
        return self.git.display

    def refresh(self) -> None:
        """Fetch a remote registry's new tags into the mirror (a local one is always current)."""
        if self.mirror is not None:
            self.mirror.update()

    # -- reading the repository -------------------------------------------------------------

    def view(self, *, at: int | None = None) -> RegistryView:
        tags = self.git.tags()
        events = [event for tag in tags if (event := _event(tag)) is not None]
        commit_times = {tag.commit: tag.commit_time for tag in tags}
        # As of `at`, HEAD was the newest commit no later than `at` (gto reads HEAD's
        # artifacts.yaml); after that, `at` only filters events by time.
        head = self.git.head() if at is None else self.git.head_at(at)
        artifacts = self.artifacts_at(head) if head else {}
        head_info = None
        if head is not None:
            head_info = (head, self.git.commit_time(head), frozenset(artifacts))
        state = fold(events, commit_times, head=head_info, at=at)
        return RegistryView(tags, events, head, artifacts, state)

    def artifacts_at(self, commit: str) -> dict[str, dict[str, Any]]:
        raw = self.git.read_file(commit, ARTIFACTS_FILE)
        if raw is None:
            return {}
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ManifestError(f"{self.display_location}:{ARTIFACTS_FILE}", str(exc)) from None
        if not isinstance(data, dict):
            return {}
        return {str(k): v if isinstance(v, dict) else {} for k, v in data.items()}

    def allowed_stages(self) -> list[str] | None:
        """The stages `.gto` allows (None: any), read from the work tree as gto does."""
        config = self.path / CONFIG_FILE
        raw: bytes | None = None
        if config.is_file():
            raw = config.read_bytes()
        elif (head := self.git.head()) is not None:
            raw = self.git.read_file(head, CONFIG_FILE)
        data = yaml.safe_load(raw) if raw else None
        stages = data.get("stages") if isinstance(data, dict) else None
        return [str(s) for s in stages] if isinstance(stages, list) else None

    def package_path(self, name: str, commit: str) -> str:
        """Where the model's package lives at `commit`: artifacts.yaml's path, else models/NAME."""
        entry = self.artifacts_at(commit).get(name, {})
        path = entry.get("path") if isinstance(entry, dict) else None
        return str(path).strip("/") if path else f"{self.models_dir}/{name}"

    def manifest_at(self, name: str, commit: str) -> Manifest:
        where = f"{name}@{commit[:12]}:{self.package_path(name, commit)}"
        raw = self.git.read_file(commit, f"{self.package_path(name, commit)}/model.yaml")
        if raw is None:
            raise ManifestError(where, "no model.yaml at this version's commit")
        try:
            return msgspec.convert(yaml.safe_load(raw), type=Manifest)
        except (yaml.YAMLError, msgspec.ValidationError) as exc:
            raise ManifestError(where, f"model.yaml: {exc}") from None

    def version_state(
        self, name: str, version: str, view: RegistryView | None = None
    ) -> VersionState:
        art = (view or self.view()).artifact(name)
        found = art.find(version)
        if found is None:
            raise VersionNotFoundError(
                name, version, [v.version for v in art.registered_versions()]
            )
        return found

    def export_package(self, name: str, version: str, dest: Path) -> Path:
        """Write the package files of a registered version into `dest` (created if needed)."""
        found = self.version_state(name, version)
        dest.mkdir(parents=True, exist_ok=True)
        self.git.export(found.commit, self.package_path(name, found.commit), dest)
        return dest

    # -- queries ----------------------------------------------------------------------------

    def list_models(
        self, *, label: str | None = None, search: str | None = None, deprecated: bool = False
    ) -> list[ModelSummary]:
        view = self.view()
        found = []
        for name in sorted(view.state):
            art = view.state[name]
            if art.deprecated and not deprecated:
                continue
            description, labels = self._about(view, art)
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

    def show(self, name: str) -> ModelDetail:
        view = self.view()
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
        description, labels = self._about(view, art)
        manifest = None
        if latest is not None:
            try:
                manifest = self.manifest_at(name, latest.commit)
            except ManifestError:
                manifest = None
        return ModelDetail(
            name=name,
            path=self.package_path(name, latest.commit) if latest else f"{self.models_dir}/{name}",
            deprecated=art.deprecated,
            latest=latest.version if latest else None,
            stages=stages,
            versions=versions,
            description=description,
            labels=labels,
            format=manifest.format if manifest else None,
            card=manifest.card if manifest else None,
            signature=manifest.signature if manifest else None,
        )

    def which(self, name: str, stage: str, *, at: int | None = None) -> StageResolution:
        """The version serving `stage` now, or at unix time `at` (events after it ignored)."""
        view = self.view(at=at)
        if name not in view.state:
            if at is not None and name in self.view().state:
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
        )

    def history(self, name: str | None = None) -> list[HistoryEvent]:
        """Every tag event, oldest first (gto history's order: time, then event priority)."""
        view = self.view()
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
            )
            for e in events
        ]

    def resolve_stages(
        self, *, stages: Sequence[str] | None = None, models: Sequence[str] | None = None
    ) -> list[ResolvedStage]:
        """Every (model, stage) that resolves to a version, for the sync loop."""
        view = self.view()
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
                    found.append(ResolvedStage(name, stage, version.version, version.commit))
        return found

    resolve_all = resolve_stages

    def _about(self, view: RegistryView, art: ArtifactState) -> tuple[str, list[str]]:
        """Description and labels: artifacts.yaml at HEAD, else the latest version's commit."""
        entry = view.artifacts.get(art.name)
        if entry is None and (latest := art.latest()) is not None:
            entry = self.artifacts_at(latest.commit).get(art.name)
        entry = entry or {}
        labels = entry.get("labels") or []
        return str(entry.get("description") or ""), [str(x) for x in labels]

    # -- writing (see writer.py) --------------------------------------------------------------

    register = writer.register
    assign = writer.assign
    unassign = writer.unassign
    deregister = writer.deregister
    deprecate = writer.deprecate


def _stages(art: ArtifactState) -> dict[str, str]:
    found = {}
    for stage in art.stages():
        version = art.resolve(stage)
        if version is not None:
            found[stage] = version.version
    return found


def _event(tag: TagRecord) -> Event | None:
    parsed = parse_tag(tag.name)
    if parsed is None:
        return None
    return Event(
        kind=parsed.kind.value,
        model=parsed.name,
        time=tag.time,
        commit=tag.commit,
        tag=tag.name,
        version=parsed.version,
        stage=parsed.stage,
        counter=parsed.counter,
        author=tag.tagger,
        author_email=tag.tagger_email,
        message=tag.message.strip(),
    )
