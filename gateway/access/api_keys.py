"""API keys: only their sha256 hashes are stored, in a file (a mounted Secret) that is
re-read when it changes, without a restart.

    # keys.yaml: one entry per key; the key itself is never written anywhere
    - principal: pricing-service
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      roles: [pricing]

A key is a random secret (32 bytes of `openssl rand -hex 32`): for such a key a plain
sha256 is as strong as a slow password hash, and it costs ~1 µs per request.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import msgspec
import yaml

from gateway.access.principal import Principal
from gateway.errors import SettingsError

__all__ = ["ApiKeyEntry", "ApiKeyStore", "hash_key"]

log = logging.getLogger("stageserve.access")
_HEX = frozenset("0123456789abcdef")


class ApiKeyEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    principal: str
    sha256: str
    roles: list[str] = []


def hash_key(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def _read(path: Path) -> dict[str, Principal]:
    try:
        raw = yaml.safe_load(path.read_bytes())
        entries = msgspec.convert(raw or [], type=list[ApiKeyEntry])
    except OSError as exc:
        raise SettingsError("api_keys_file", str(path), f"cannot read: {exc.strerror}") from None
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        # Only the parser's message: never the file's content (it may hold secrets by mistake).
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError("api_keys_file", str(path), f"invalid: {reason}") from None
    found: dict[str, Principal] = {}
    for index, entry in enumerate(entries):
        digest = entry.sha256.lower()
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise SettingsError(
                "api_keys_file", str(path), f"entry {index}: sha256 must be 64 hex digits"
            )
        found[digest] = Principal(
            name=entry.principal, roles=tuple(entry.roles), client=entry.principal, via="api_key"
        )
    return found


class ApiKeyStore:
    """Key hash -> Principal, reloaded by `refresh()` when the file changed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp = self._stat()
        self.principals = _read(self.path)  # a bad file at start is an error, not a warning

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> bool:
        """Re-read the file if it changed (a Secret update swaps a symlink: new inode);
        a file that became unreadable or invalid keeps the keys loaded before. True: reloaded."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.principals = _read(self.path)
        except SettingsError as exc:
            log.error("keeping the API keys loaded before: %s", exc)
            return False
        log.info("reloaded %d API keys from %s", len(self.principals), self.path)
        return True

    def lookup(self, key: bytes) -> Principal | None:
        return self.principals.get(hashlib.sha256(key).hexdigest())

    def clients(self) -> set[str]:
        return {p.client for p in self.principals.values()}
