"""The repository handle: a git repository in GTO's tag format, read into a `RegistryView`.

Queries (queries.py) and writes (writer.py) take this handle; `GitRegistry`
(git_registry.py) combines the three into one object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import msgspec
import yaml

from registry_sync.errors import (
    ManifestError,
    ModelNotFoundError,
    NotARegistryError,
    VersionNotFoundError,
)
from registry_sync.package.manifest import Manifest
from registry_sync.registry.events import ArtifactState, Event, VersionState, fold
from registry_sync.registry.git import DanglingRef, Git, TagRecord, ensure_repo
from registry_sync.registry.gto_tags import TagKind, parse_tag
from registry_sync.registry.remote import Mirror, default_mirror_dir, is_url

if TYPE_CHECKING:
    from registry_sync.registry.trust import SignatureCheck, TagTrust

__all__ = ["ARTIFACTS_FILE", "CONFIG_FILE", "RegistryRepo", "RegistryView"]

log = logging.getLogger(__name__)

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
    # With a trust policy: the check of every stage tag in a protected stage (and of every
    # withdrawal of what serves one), by tag name, and the events left out of `state`
    # because their signature is not trusted (a withdrawal: a copy naming the stage it
    # would have emptied).
    checks: dict[str, SignatureCheck] = field(default_factory=dict)
    refused: list[tuple[Event, SignatureCheck]] = field(default_factory=list)
    # Tags whose object is missing: left out of everything above, reported by their readers.
    dangling: list[DanglingRef] = field(default_factory=list)

    def artifact(self, name: str) -> ArtifactState:
        found = self.state.get(name)
        if found is None:
            raise ModelNotFoundError(name, sorted(self.state))
        return found


class RegistryRepo:
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
        # Set by whoever holds a trust policy (the sync, `which --trusted`): then, in a
        # protected stage, only assignments signed by an allowed signer count.
        self.trust: TagTrust | None = None

    @classmethod
    def open(
        cls, location: str | Path, *, mirror_dir: Path | None = None, models_dir: str = "models"
    ) -> Self:
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

    def view(self, *, at: int | None = None, trusted: bool = True) -> RegistryView:
        """The registry as of `at`; with `trusted=False`, as gto reads it even under a trust
        policy (every event counts, nothing is checked)."""
        listing = self.git.tag_listing()
        tags = listing.records
        _warn_once(self.display_location, listing.dangling)
        events = [event for tag in tags if (event := _event(tag)) is not None]
        checks: dict[str, SignatureCheck] = {}
        refused: list[tuple[Event, SignatureCheck]] = []
        commit_times = {tag.commit: tag.commit_time for tag in tags}
        # As of `at`, HEAD was the newest commit no later than `at` (gto reads HEAD's
        # artifacts.yaml); after that, `at` only filters events by time.
        head = self.git.head() if at is None else self.git.head_at(at)
        artifacts = self.artifacts_at(head) if head else {}
        head_info = None
        if head is not None:
            head_info = (head, self.git.commit_time(head), frozenset(artifacts))
        if self.trust is not None and trusted:
            by_name = {t.name: t for t in tags}
            events = self._trusted(events, by_name, checks, refused)
            without = [e for e in events if e.kind not in _WITHDRAWALS]
            serving = fold(without, commit_times, head=head_info, at=at)
            events = self._trusted_withdrawals(events, serving, by_name, checks, refused)
        state = fold(events, commit_times, head=head_info, at=at)
        return RegistryView(tags, events, head, artifacts, state, checks, refused, listing.dangling)

    def _trusted(
        self,
        events: list[Event],
        tags: dict[str, TagRecord],
        checks: dict[str, SignatureCheck],
        refused: list[tuple[Event, SignatureCheck]],
    ) -> list[Event]:
        """The events that count: stage events of protected stages only when trusted."""
        assert self.trust is not None
        kept = []
        for event in events:
            rule = None
            if event.kind in (TagKind.ASSIGN, TagKind.UNASSIGN) and event.stage and event.tag:
                rule = self.trust.rule_for(event.model, event.stage)
            if rule is None or event.tag is None:
                kept.append(event)
                continue
            check = checks[event.tag] = self.trust.check(tags[event.tag], rule)
            if check.trusted:
                kept.append(event)
            else:
                refused.append((event, check))
        return kept

    def _trusted_withdrawals(
        self,
        events: list[Event],
        serving: dict[str, ArtifactState],
        tags: dict[str, TagRecord],
        checks: dict[str, SignatureCheck],
        refused: list[tuple[Event, SignatureCheck]],
    ) -> list[Event]:
        """The events that count: a deregistration of a version that serves a protected
        stage, or a deprecation of a model that serves one, only when trusted there.

        `serving` is the state without any withdrawal, so a withdrawal is judged by what it
        would take out of service: withdrawing a version no protected stage serves needs no
        signature, and an unsigned deregistration cannot pre-empt a signed assignment either.
        """
        assert self.trust is not None
        kept = []
        for event in events:
            art = serving.get(event.model)
            if event.kind not in _WITHDRAWALS or event.tag is None or art is None:
                kept.append(event)
                continue
            refusals = []  # one per protected stage it would empty without a trusted signature
            for stage in art.stages():
                found = art.resolve(stage)
                rule = self.trust.rule_for(event.model, stage)
                if found is None or rule is None:
                    continue
                if event.kind == TagKind.DEREGISTER and (
                    found.version != event.version or found.commit != event.commit
                ):
                    continue
                check = checks[event.tag] = self.trust.check(tags[event.tag], rule)
                if not check.trusted:
                    refusals.append((msgspec.structs.replace(event, stage=stage), check))
            if refusals:
                refused.extend(refusals)
            else:
                kept.append(event)
        return kept

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
        """The stages `.gto` allows (None: any): the work tree's file as gto reads it, else
        HEAD's (a bare mirror has no work tree)."""
        raw: bytes | None = None
        if not self.git.is_bare():
            config = Path(self.git.run("rev-parse", "--show-toplevel").strip()) / CONFIG_FILE
            raw = config.read_bytes() if config.is_file() else None
        if raw is None and (head := self.git.head()) is not None:
            raw = self.git.read_file(head, CONFIG_FILE)
        try:
            data = yaml.safe_load(raw) if raw else None
        except yaml.YAMLError as exc:
            raise NotARegistryError(self.display_location, f"{CONFIG_FILE}: {exc}") from None
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
        from registry_sync.registry.link import complete_package

        found = self.version_state(name, version)
        dest.mkdir(parents=True, exist_ok=True)
        self.git.export(found.commit, self.package_path(name, found.commit), dest)
        # Files the registry points to instead of holding (a linked repository, a uri).
        complete_package(dest)
        return dest


# Tags that take what serves out of service without naming a stage.
_WITHDRAWALS = (TagKind.DEREGISTER, TagKind.DEPRECATE)

# (registry, tag, object) already warned about: a sync reads the registry every poll.
_WARNED: set[tuple[str, str, str]] = set()


def _warn_once(location: str, dangling: list[DanglingRef]) -> None:
    for ref in dangling:
        key = (location, ref.name, ref.object)
        if key not in _WARNED:
            _WARNED.add(key)
            log.warning(
                "%s: tag %r points to a missing object %s: ignored (see `stageserve registry "
                "check`)",
                location,
                ref.name,
                ref.object[:12],
            )


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
