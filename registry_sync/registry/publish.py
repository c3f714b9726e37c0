"""How a registry write lands: the branch it commits to, artifacts.yaml, and the tag, dated
past the model's newest event, pushed to the remote for a mirrored registry."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import yaml

from registry_sync.errors import GitCommandError, NotARegistryError, RegistryError
from registry_sync.registry.events import ArtifactState
from registry_sync.registry.gto_tags import parse_tag
from registry_sync.registry.repository import RegistryRepo
from registry_sync.registry.views import TagWritten, iso_time

__all__ = ["current_branch", "dump_artifacts", "newest_event_time", "publish_tag"]


def current_branch(reg: RegistryRepo) -> str:
    branch = reg.git.head_branch()
    if not branch:
        raise NotARegistryError(reg.display_location, "HEAD is detached; check out a branch")
    return branch


def dump_artifacts(artifacts: Mapping[str, Any]) -> bytes:
    return yaml.safe_dump(artifacts, sort_keys=True, allow_unicode=True).encode()


def newest_event_time(art: ArtifactState | None, stage: str | None = None) -> int:
    """The time of the model's newest event, or of its newest event for `stage` (0: none)."""
    if art is None:
        return 0
    if stage is not None:
        return max((e.time for v in art.versions for e in v.stages.get(stage, [])), default=0)
    times = [e.time for v in art.versions for e in v.all_events()]
    times += [e.time for e in art.deprecations]
    return max(times, default=0)


def publish_tag(
    reg: RegistryRepo,
    *,
    name: str,
    tag: str,
    commit: str,
    message: str,
    branch: str | None = None,
    old: str | None = None,
    paths: list[str] | None = None,
    version: str | None = None,
    stage: str | None = None,
    after: int = 0,
) -> TagWritten:
    """Create the tag (dated now, but later than unix time `after`), sync the work tree, push.

    gto orders events by one-second tagger times, and breaks ties in ways that ignore `#N`
    (see events.py); a write whose meaning depends on coming after an event passes that
    event's time as `after`, and the tag is dated a second later if the clock has not moved.
    """
    time = max(reg.git.now(), after + 1)
    reg.git.create_tag(tag, commit, message, time)
    if reg.mirror is not None:
        refs = ([branch] if branch else []) + [f"refs/tags/{tag}"]
        try:
            reg.mirror.push(refs)
        except RegistryError:
            # Leave the mirror as the remote is: the next fetch must not find our orphans.
            reg.git.delete_tag(tag)
            if branch is not None:
                reg.git.reset_branch(branch, old)
            raise
    elif paths and not reg.git.is_bare():
        # The commit and tag are made; a work tree left stale is only cosmetic.
        with contextlib.suppress(GitCommandError):
            reg.git.sync_worktree(paths)
    parsed = parse_tag(tag)
    return TagWritten(
        model=name,
        tag=tag,
        event=parsed.kind.value if parsed else "",
        commit=commit,
        time=iso_time(time),
        version=version,
        stage=stage,
    )
