"""Digests of each MLflow version's files, recorded at first download.

MLflow stores no digest of a version's artifacts, and its artifact store can be written
after registration. The first download is trusted and pinned; any later download of the same
version (after a restart, or when the cache was cleared) must match it file for file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from registry_sync.errors import ArtifactChangedError

__all__ = ["PINS_FILE", "VersionPins"]

PINS_FILE = "pins.json"


class PinnedVersion(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    files: dict[str, str]  # path -> sha256
    first_seen: str


@dataclass
class VersionPins:
    path: Path
    _pins: dict[str, PinnedVersion] | None = field(default=None)

    def check_and_pin(
        self, model: str, version: str, source: str, files: dict[str, str], now_iso: str
    ) -> None:
        """Raise ArtifactChangedError when the files differ from the first download's."""
        pins = self._load()
        key = f"{model}/{version}"
        where = f"{model} version {version}"
        pinned = pins.get(key)
        if pinned is None:
            pins[key] = PinnedVersion(source=source, files=dict(files), first_seen=now_iso)
            self._save(pins)
            return
        if pinned.source != source:
            raise ArtifactChangedError(where, "source", pinned.source, source)
        for name in sorted(set(pinned.files) | set(files)):
            before, now = pinned.files.get(name, "missing"), files.get(name, "missing")
            if before != now:
                raise ArtifactChangedError(where, name, before, now)

    def _load(self) -> dict[str, PinnedVersion]:
        if self._pins is None:
            self._pins = {}
            if self.path.is_file():
                self._pins = msgspec.json.decode(
                    self.path.read_bytes(), type=dict[str, PinnedVersion]
                )
        return self._pins

    def _save(self, pins: dict[str, PinnedVersion]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pins-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(msgspec.json.format(msgspec.json.encode(pins), indent=2))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
