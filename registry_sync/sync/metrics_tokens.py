"""Bearer tokens the sync sidecar's /metrics accepts: only their sha256 hashes, in a file
(a mounted Secret) that is re-read when it changes, without a restart.

    # sync-metrics-tokens: one sha256 per line, `sha256sum` output works as it is
    9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08  -

The gateway's /metrics checks API keys against the access policy (`metrics_auth`); the sync
holds no access policy and never mounts the gateway's key Secret, so it gets the hashes of
the scrape tokens only. A token is a random secret (`openssl rand -hex 32`): for such a
token a plain sha256 is as strong as a slow password hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from registry_sync.errors import SettingsError

__all__ = ["MetricsTokens"]

log = logging.getLogger("stageserve.sync")
_HEX = frozenset("0123456789abcdef")
_KEY = "sync_metrics_tokens_file"


def _read(path: Path) -> frozenset[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SettingsError(_KEY, str(path), f"cannot read: {reason}") from None
    found = set()
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        digest = words[0].lower()
        if len(digest) != 64 or not set(digest) <= _HEX:
            # Never the line itself: a raw token pasted by mistake must not reach the log.
            raise SettingsError(_KEY, str(path), f"line {number}: not a sha256 (64 hex digits)")
        found.add(digest)
    return frozenset(found)


class MetricsTokens:
    """The accepted token hashes, reloaded when the file changed (checked on each scrape)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp = self._stat()
        self.hashes = _read(self.path)  # a bad file at start is an error, not a warning

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> None:
        """Re-read the file if it changed (a Secret update swaps a symlink: new inode); a
        file that became unreadable or invalid keeps the hashes loaded before."""
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.hashes = _read(self.path)
        except SettingsError as exc:
            log.error("keeping the metrics tokens loaded before: %s", exc)
            return
        log.info("reloaded %d metrics token hashes from %s", len(self.hashes), self.path)

    def accepts(self, authorization: str | None) -> bool:
        """Whether `Authorization: Bearer <token>` names a listed token."""
        if not authorization or authorization[:7].lower() != "bearer ":
            return False
        self.refresh()
        token = authorization[7:].strip().encode("utf-8", "replace")
        return hashlib.sha256(token).hexdigest() in self.hashes
