"""The local mirror of a remote registry: cloned once, then kept current with `git fetch`."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from registry_sync.errors import GitCommandError, RegistryUnreachableError
from registry_sync.progress import progress
from registry_sync.registry.git import Git, redact_url

__all__ = ["Mirror", "default_mirror_dir", "is_url"]

# scp-like syntax: user@host:path/repo.git
_SCP_RE = re.compile(r"^[\w.-]+@[\w.-]+:")


def is_url(location: str) -> bool:
    """A git URL (https://, ssh://, file://, git@host:path), as opposed to a local path."""
    return "://" in location or bool(_SCP_RE.match(location))


def default_mirror_dir(url: str) -> Path:
    """`$XDG_CACHE_HOME/stageserve/mirrors/<name>-<hash>` (one folder per URL)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    safe = redact_url(url)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", safe.rstrip("/").rsplit("/", 1)[-1])[:40]
    digest = hashlib.sha256(safe.encode()).hexdigest()[:12]
    return base / "stageserve" / "mirrors" / f"{slug}-{digest}"


class Mirror:
    """A bare `git clone --mirror` of `url` in `folder`.

    `update()` clones when the folder holds no mirror yet and fetches otherwise, so a registry
    is cloned once per machine, never once per call. `last_action` says which one ran.
    """

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.display = redact_url(url)
        self.last_action: str | None = None

    @property
    def git(self) -> Git:
        return Git(self.folder, display=self.display)

    def exists(self) -> bool:
        return (self.folder / "HEAD").is_file() and (self.folder / "refs").is_dir()

    def update(self) -> Path:
        if self.exists():
            self._fetch()
        else:
            self._clone()
        return self.folder

    def _clone(self) -> None:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        # Clone beside the final folder and rename: a half-done clone is never mistaken for
        # a mirror, and two processes racing both end up with a complete one.
        tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=self.folder.parent))
        try:
            # The first clone of a large registry is the slow step: show it (size known after).
            with progress(f"clone {self.display}", None, registry=self.display) as done:
                self._remote_call(
                    Git(tmp.parent), "clone", "--mirror", "--quiet", self.url, str(tmp)
                )
                done(sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()))
            # Keep fetching every ref (+refs/*:refs/*) but push only the refs we name:
            # with remote.origin.mirror set, `git push` would mirror (and delete) everything.
            Git(tmp, display=self.display).run("config", "--unset", "remote.origin.mirror")
            if not self.exists():
                tmp.rename(self.folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.last_action = "clone"

    def _fetch(self) -> None:
        git = self.git
        # Follow the URL we were given, even if the mirror was made for an older one.
        git.run("remote", "set-url", "origin", self.url)
        self._remote_call(git, "fetch", "--quiet", "--tags", "--prune", "--prune-tags", "origin")
        self.last_action = "fetch"

    def push(self, refs: Sequence[str]) -> None:
        """Push refs (branch and tags) to the remote atomically: all of them or none."""
        self._remote_call(self.git, "push", "--atomic", "--quiet", "origin", *refs)

    def _remote_call(self, git: Git, *args: str) -> None:
        try:
            git.run(*args)
        except GitCommandError as exc:
            # git may echo the URL with its password; never let it reach a log line.
            reason = exc.reason.replace(self.url, self.display)
            raise RegistryUnreachableError(self.display, reason) from None
