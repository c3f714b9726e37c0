"""How a registry write lands: the branch it commits to, and the tag, dated truthfully
after the model's newest event, pushed to the remote for a mirrored registry."""

from __future__ import annotations

import contextlib
import os
import time

from registry_sync.errors import GitCommandError, NotARegistryError, RegistryError, TagTimeError
from registry_sync.registry.events import ArtifactState
from registry_sync.registry.git import Signing
from registry_sync.registry.gto_tags import parse_tag
from registry_sync.registry.repository import RegistryRepo
from registry_sync.registry.views import TagWritten, iso_time

__all__ = ["current_branch", "newest_event_time", "publish_tag"]

# Waiting out the rest of a second is fine; an event further ahead is a clock problem.
_MAX_WAIT_S = 2.0


def current_branch(reg: RegistryRepo) -> str:
    branch = reg.git.head_branch()
    if not branch:
        raise NotARegistryError(reg.display_location, "HEAD is detached; check out a branch")
    return branch


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
    sign: Signing | None = None,
) -> TagWritten:
    """Create the tag (dated now, and later than unix time `after`), sync the work tree, push.

    gto orders events by one-second tagger times, and breaks ties in ways that ignore `#N`
    (see events.py); a write whose meaning depends on coming after an event passes that
    event's time as `after`, and waits for the clock to pass it (at most a second): a tag is
    never dated in the future, so history and `which --at` stay true.
    """
    try:
        tag_time = _time_after(reg, name, after)
    except TagTimeError:
        if branch is not None:  # a refused write changes nothing
            reg.git.reset_branch(branch, old)
        raise
    reg.git.create_tag(tag, commit, message, tag_time, sign)
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
        time=iso_time(tag_time),
        version=version,
        stage=stage,
    )


def _time_after(reg: RegistryRepo, name: str, after: int) -> int:
    """The current time once it is past `after`: the rest of the second is waited out. A
    fixed clock (GIT_COMMITTER_DATE) or an event dated ahead of the clock is refused."""
    now = reg.git.now()
    if now > after:
        return now
    if "GIT_COMMITTER_DATE" in os.environ:
        raise TagTimeError(
            name, iso_time(after), iso_time(now), "GIT_COMMITTER_DATE fixes the clock there"
        )
    wait_s = after + 1 - time.time()
    if wait_s > _MAX_WAIT_S:
        raise TagTimeError(
            name, iso_time(after), iso_time(now), "that event is dated in the future (clock skew?)"
        )
    time.sleep(max(wait_s, 0.0) + 0.01)
    while (now := reg.git.now()) <= after:  # git's clock is whole seconds: at most a blink
        time.sleep(0.01)
    return now
