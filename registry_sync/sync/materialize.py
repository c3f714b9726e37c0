"""Materialize registry versions into a local cache: export, verify, rename into place.

Layout: `<cache>/<model>/<version>-<short digest>/` holds one verified package. A folder is
written under a temporary name and renamed into place, so a reader (the gateway, maybe in
another container) never sees half a package; once in place it is reused, never rewritten.
Folders no longer wanted are removed only after a grace period, because a gateway may still
be serving (or finishing requests on) the old version while it loads the new one.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from registry_sync.package.read import ModelPackage, read_package
from registry_sync.progress import progress

__all__ = ["Materialized", "Materializer", "PackageExporter"]

log = logging.getLogger(__name__)

SHORT_DIGEST_CHARS = 12
_TMP_PREFIX = ".tmp-"


class PackageExporter(Protocol):
    """Writes the package files of one registered version into an empty folder."""

    def export_package(self, name: str, version: str, dest: Path) -> Path: ...


@dataclass(frozen=True)
class Materialized:
    model: str
    version: str
    path: Path
    digest: str


@dataclass
class Materializer:
    cache_dir: Path
    gc_grace_s: float = 600.0
    # (model, version) -> what we verified this process; the registry's tags are immutable
    # in practice, but a re-created tag would point elsewhere, so the key includes the commit.
    _verified: dict[tuple[str, str, str], Materialized] = field(default_factory=dict)
    # folder -> monotonic time it was first seen unwanted
    _unwanted_since: dict[Path, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Snapshot paths must be absolute: the gateway may run with another working folder.
        self.cache_dir = self.cache_dir.resolve()

    def materialize(
        self, exporter: PackageExporter, model: str, version: str, commit: str
    ) -> Materialized:
        """Return the verified cache folder of (model, version), exporting it if needed.

        Raises a PackageError (digest mismatch, missing file, bad manifest) naming the file;
        nothing is left in the cache then.
        """
        key = (model, version, commit)
        known = self._verified.get(key)
        if known is not None and known.path.is_dir():
            return known
        model_dir = self.cache_dir / model
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f"{_TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        try:
            with progress(
                f"fetch {model} {version}", None, model=model, version=version
            ) as fetched:
                exporter.export_package(model, version, tmp)
                fetched(_folder_bytes(tmp))
            listed = read_package(tmp, verify_digests=False)
            size = sum(f.size_bytes for f in listed.manifest.files)
            with progress(
                f"verify {model} {version}", size, model=model, version=version
            ) as advance:
                package = read_package(tmp, verify_digests=True, on_bytes=advance)
            final = model_dir / f"{version}-{_short(package.digest)}"
            if final.is_dir():
                # Same bytes already in place (from an earlier run): reuse, never rewrite,
                # but check it is still what it claims to be.
                package = read_package(final, verify_digests=True)
            else:
                tmp.rename(final)
                package = _moved(package, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        done = Materialized(model=model, version=version, path=final, digest=package.digest)
        self._verified[key] = done
        return done

    def collect_garbage(self, wanted: set[Path], now: float | None = None) -> list[Path]:
        """Remove version folders unwanted for longer than the grace period; return them."""
        now = time.monotonic() if now is None else now
        removed: list[Path] = []
        if not self.cache_dir.is_dir():
            return removed
        wanted = {p.resolve() for p in wanted}
        for model_dir in self.cache_dir.iterdir():
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            for folder in model_dir.iterdir():
                if not folder.is_dir():
                    continue
                resolved = folder.resolve()
                if folder.name.startswith(_TMP_PREFIX):
                    # Left behind by a crash mid-export; nobody reads temp folders.
                    shutil.rmtree(folder, ignore_errors=True)
                    continue
                if resolved in wanted:
                    self._unwanted_since.pop(resolved, None)
                    continue
                first_seen = self._unwanted_since.setdefault(resolved, now)
                if now - first_seen >= self.gc_grace_s:
                    shutil.rmtree(folder, ignore_errors=True)
                    self._unwanted_since.pop(resolved, None)
                    self._verified = {
                        k: v for k, v in self._verified.items() if v.path.resolve() != resolved
                    }
                    removed.append(folder)
                    log.info("removed unassigned package %s", folder)
        return removed


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:SHORT_DIGEST_CHARS]


def _moved(package: ModelPackage, path: Path) -> ModelPackage:
    return read_package(path, verify_digests=False) if package.path != path else package
