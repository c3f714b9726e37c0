"""Registry events (from GTO tags) folded into state, and the rule that picks a stage's version.

The fold is a faithful port of what `gto show NAME#STAGE` computes (gto 1.10: `gto/tag.py`
`TagManager.update_state` and `index_tag`, `gto/index.py` `EnrichmentManager.update_state`,
`gto/base.py` `Version.is_active`, `VStage.is_active`, `Artifact.is_active` and
`Artifact.get_vstages(sort=Timestamp, versions_per_stage=1)`), so both tools always agree:

* a version counts while its newest registration event is a registration (a deregistration in
  the same second wins); a stage counts for a version while its newest event for that stage is
  an assignment (an unassignment in the same second wins);
* among those, the version whose latest assignment to the stage is newest serves the stage, so
  re-assigning an older version is a rollback;
* a model is deprecated while a deprecation is strictly newer than every other event of it
  (commit times of its versions and of HEAD when HEAD's artifacts.yaml lists it included);
* ties on gto's one-second tagger timestamps are broken as gto's stable sorts break them: the
  version registered earlier wins. stageserve's writer never creates such ties (each of its tags
  is at least one second after the model's newest event), so on registries it writes the
  newest assignment, which is also the highest `#N`, always wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from registry_sync.registry.gto_tags import TagKind, version_key

__all__ = ["COMMIT_EVENT", "PRIORITY", "ArtifactState", "Event", "VersionState", "fold"]

# gto's enrichment event: a version's commit (or HEAD) seen with the model in artifacts.yaml.
COMMIT_EVENT = "commit"
# gto/base.py event priorities: `gto history` sorts by (timestamp, priority).
PRIORITY = {
    COMMIT_EVENT: 0,
    TagKind.DEPRECATE.value: 2,
    TagKind.REGISTER.value: 3,
    TagKind.DEREGISTER.value: 4,
    TagKind.ASSIGN.value: 5,
    TagKind.UNASSIGN.value: 6,
}


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One event: a GTO tag (kind is a TagKind value) or a commit enrichment ("commit")."""

    kind: str
    model: str
    time: int  # unix seconds: the tagger date of a tag, the committer date of a commit
    commit: str
    tag: str | None = None
    version: str | None = None
    stage: str | None = None
    counter: int | None = None
    author: str = ""
    author_email: str = ""
    message: str = ""


def _newest(events: list[Event]) -> Event:
    """gto's `sorted(events, key=created_at)[::-1][0]`: on a tie, the one listed last."""
    return sorted(events, key=lambda e: e.time)[::-1][0]


@dataclass
class VersionState:
    version: str
    commit: str
    registrations: list[Event] = field(default_factory=list)
    deregistrations: list[Event] = field(default_factory=list)
    commits: list[Event] = field(default_factory=list)
    stages: dict[str, list[Event]] = field(default_factory=dict)

    @property
    def registered(self) -> bool:
        return bool(self.registrations)

    @property
    def discovered(self) -> bool:
        return not (self.registrations or self.deregistrations)

    def stage_events(self, stage: str) -> list[Event]:
        events = self.stages.get(stage, [])
        # gto keeps assignments and unassignments in two time-sorted lists, then concatenates.
        assigns = sorted((e for e in events if e.kind == TagKind.ASSIGN), key=lambda e: e.time)
        unassigns = sorted((e for e in events if e.kind != TagKind.ASSIGN), key=lambda e: e.time)
        return assigns + unassigns

    def all_events(self) -> list[Event]:
        stage_events = [e for s in self.stages for e in self.stage_events(s)]
        return self.registrations + self.deregistrations + self.commits + stage_events

    @property
    def is_active(self) -> bool:
        direct = self.registrations + self.deregistrations
        if direct:
            return _newest(direct).kind == TagKind.REGISTER
        return bool(self.commits or any(self.stages.values()))

    @property
    def created_at(self) -> int:
        if self.registrations:
            return max(e.time for e in self.registrations)
        indirect = self.commits + [e for s in self.stages for e in self.stages[s]]
        return max((e.time for e in indirect), default=0)

    def in_stage(self, stage: str) -> bool:
        events = self.stage_events(stage)
        return bool(events) and _newest(events).kind == TagKind.ASSIGN

    def assigned_at(self, stage: str) -> int:
        return max(e.time for e in self.stages.get(stage, []) if e.kind == TagKind.ASSIGN)


@dataclass
class ArtifactState:
    name: str
    versions: list[VersionState] = field(default_factory=list)  # gto's creation order
    deprecations: list[Event] = field(default_factory=list)

    @property
    def deprecated(self) -> bool:
        others = [e for v in self.versions for e in v.all_events()]
        events = sorted(self.deprecations, key=lambda e: e.time) + others
        return bool(events) and _newest(events).kind == TagKind.DEPRECATE

    def find(self, version: str) -> VersionState | None:
        """The registered version of that name (a deregistered one included)."""
        for state in self.versions:
            if state.version == version and not state.discovered:
                return state
        return None

    def registered_versions(self) -> list[VersionState]:
        """Every version that has a registration tag, in SemVer order (newest last)."""
        found = [v for v in self.versions if v.registered]
        return sorted(found, key=lambda v: version_key(v.version))

    def latest(self) -> VersionState | None:
        """gto's `get_latest_version(registered_only=True)`: the greatest active version."""
        active = [v for v in self.registered_versions() if v.is_active]
        return active[-1] if active else None

    def stages(self) -> list[str]:
        return sorted({s for v in self.versions for s, events in v.stages.items() if events})

    def resolve(self, stage: str) -> VersionState | None:
        """The version in `stage`, as `gto show NAME#STAGE` answers (None: nothing)."""
        if self.deprecated:
            return None
        active = sorted((v for v in self.versions if v.is_active), key=lambda v: v.created_at)
        candidates = [v for v in active[::-1] if v.in_stage(stage)]
        ranked = sorted(candidates, key=lambda v: v.assigned_at(stage))[::-1]
        return ranked[0] if ranked else None


def _order(events: Iterable[Event]) -> list[Event]:
    # gto lists tag names sorted, then sorts stably by tagger time: ties go by tag name.
    return sorted(events, key=lambda e: (e.time, e.tag or ""))


def fold(
    events: Iterable[Event],
    commit_times: dict[str, int],
    *,
    head: tuple[str, int, frozenset[str]] | None = None,
    at: int | None = None,
) -> dict[str, ArtifactState]:
    """Fold tag events into per-model state, as of unix time `at` if given.

    Tag and commit times have one-second resolution: an event stamped second S happened
    somewhere in [S, S+1), so as of `at` only events with S < at (whole seconds; callers pass
    floor(at)) certainly happened; an event in the very second of `at` is left out.

    `commit_times` maps each tagged commit to its committer time (gto's enrichment events);
    `head` is (HEAD commit, its time, the models its artifacts.yaml lists).
    """
    kept = _order(e for e in events if at is None or e.time < at)
    state: dict[str, ArtifactState] = {}

    def artifact(name: str) -> ArtifactState:
        return state.setdefault(name, ArtifactState(name))

    for event in kept:
        if event.kind == TagKind.DEPRECATE:
            artifact(event.model).deprecations.append(event)
    for event in kept:
        if event.kind in (TagKind.REGISTER, TagKind.DEREGISTER):
            art = artifact(event.model)
            found = next(
                (
                    v
                    for v in art.versions
                    if v.version == event.version and v.commit == event.commit and not v.discovered
                ),
                None,
            )
            if found is None:
                found = VersionState(str(event.version), event.commit)
                art.versions.append(found)
            target = (
                found.registrations if event.kind == TagKind.REGISTER else found.deregistrations
            )
            target.append(event)
    for event in kept:
        if event.kind in (TagKind.ASSIGN, TagKind.UNASSIGN):
            _index_stage_event(artifact(event.model), event)
    for art in state.values():
        for version in art.versions:
            _enrich(version, art.name, commit_times.get(version.commit), at)
    if head is not None and (at is None or head[1] < at):
        commit, time, listed = head
        for name in sorted(listed):
            art = artifact(name)
            at_head = [v for v in art.versions if v.commit == commit and not v.discovered]
            if not at_head:
                discovered = VersionState(commit, commit)
                art.versions.append(discovered)
                _enrich(discovered, name, time, at)
    return state


def _index_stage_event(art: ArtifactState, event: Event) -> None:
    registered = [v for v in art.versions if v.commit == event.commit and not v.discovered]
    if registered:
        version = registered[0]
    else:
        # gto makes an (empty) version named by the commit, then files the event under a
        # second one it cannot find again: each such event ends up a version of its own.
        art.versions.append(VersionState(event.commit, event.commit))
        version = VersionState(event.commit, event.commit)
        art.versions.append(version)
    filed = msgspec.structs.replace(event, version=version.version)
    version.stages.setdefault(str(event.stage), []).append(filed)


def _enrich(version: VersionState, model: str, time: int | None, at: int | None) -> None:
    if time is None or (at is not None and time >= at):
        return
    version.commits.append(Event(kind=COMMIT_EVENT, model=model, time=time, commit=version.commit))
