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
    """A bare mirror of `url` in `folder`, holding every ref of the remote.

    `update()` clones when the folder holds no mirror yet and fetches otherwise, so a registry
    is cloned once per machine, never once per call. `last_action` says which one ran.

    The URL (and any password or token in it) is never written into the mirror: each git
    command that talks to the remote gets `remote.origin.url` through the environment
    (`GIT_CONFIG_COUNT`, appended to any the caller set, e.g. a credential helper), the
    process's own memory, and FETCH_HEAD is not written. A mirror an older version made with
    the URL in its config has it removed at the next fetch.
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
        # Made beside the final folder and renamed: a half-done clone is never mistaken for
        # a mirror, and two processes racing both end up with a complete one.
        tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=self.folder.parent))
        try:
            git = Git(tmp, display=self.display)
            git.run("init", "--bare", "--quiet")
            # Every ref of the remote, as `clone --mirror` would (but no remote.origin.mirror:
            # with it, `git push` would mirror, and delete, everything).
            git.run("config", "remote.origin.fetch", "+refs/*:refs/*")
            # The first clone of a large registry is the slow step: show it (size known after).
            with progress(f"clone {self.display}", None, registry=self.display) as done:
                self._remote_call(git, "fetch", "--quiet", "--no-write-fetch-head", "origin")
                done(sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()))
            head = self._remote_call(git, "ls-remote", "--symref", "origin", "HEAD")
            branch = _symref_of_head(head)
            if branch is not None:
                git.run("symbolic-ref", "HEAD", branch)
            if not self.exists():
                tmp.rename(self.folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.last_action = "clone"

    def _fetch(self) -> None:
        git = self.git
        # Mirrors made before the URL was kept out of them stored it, password and all.
        git.run("config", "--unset-all", "remote.origin.url", ok_codes=(0, 5))
        git.run("config", "--unset-all", "remote.origin.mirror", ok_codes=(0, 5))
        self._remote_call(
            git,
            "fetch", "--quiet", "--no-write-fetch-head", "--tags", "--prune", "--prune-tags",
            "origin",
        )  # fmt: skip
        self.last_action = "fetch"

    def push(self, refs: Sequence[str]) -> None:
        """Push refs (branch and tags) to the remote atomically: all of them or none."""
        self._remote_call(self.git, "push", "--atomic", "--quiet", "origin", *refs)

    def _remote_call(self, git: Git, *args: str) -> str:
        try:
            return git.run(*args, env=_remote_env(self.url))
        except GitCommandError as exc:
            # git may echo the URL with its password; never let it reach a log line.
            reason = exc.reason.replace(self.url, self.display)
            raise RegistryUnreachableError(self.display, reason) from None


def _remote_env(url: str) -> dict[str, str]:
    """`remote.origin.url` for one git command, after any config the environment gives."""
    try:
        start = int(os.environ.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        start = 0
    return {
        "GIT_CONFIG_COUNT": str(start + 1),
        f"GIT_CONFIG_KEY_{start}": "remote.origin.url",
        f"GIT_CONFIG_VALUE_{start}": url,
    }


def _symref_of_head(ls_remote: str) -> str | None:
    """`ref: refs/heads/main\tHEAD` -> refs/heads/main (None for a remote without HEAD)."""
    for line in ls_remote.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            return line[len("ref: ") : -len("\tHEAD")]
    return None
