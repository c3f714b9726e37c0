"""Materialize registry versions into a local cache: export, verify, rename into place.

Layout: `<cache>/<model>/<version>-<short digest>/` holds one verified package. A folder is
written under a temporary name and renamed into place, so a reader (the gateway, maybe in
another container) never sees half a package; once in place it is reused, never rewritten --
unless it no longer verifies: then it is replaced by a fresh export from the registry.
Folders no longer wanted are removed only after a grace period, because a gateway may still
be serving (or finishing requests on) the old version while it loads the new one.

Before every reuse a folder is re-checked cheaply: the size, mtime, ctime and inode of each of
its files must be what they were when their sha256 was last checked. Any write, truncation,
rename or `touch` changes ctime (which no unprivileged process can set back), so a changed or
missing file is found at the next poll and the folder is re-hashed, and repaired when it fails.
A folder is re-hashed in full after a restart (nothing is trusted from an earlier process) and
when `request_full_check` asks (embedded mode: the gateway failed to load it).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from registry_sync.errors import CacheError, PackageError
from registry_sync.package.read import ModelPackage, read_package
from registry_sync.progress import progress

__all__ = ["Materialized", "Materializer", "PackageExporter"]

log = logging.getLogger(__name__)

SHORT_DIGEST_CHARS = 12
_TMP_PREFIX = ".tmp-"
# `<version>-<short digest>`: the only folders garbage collection deletes (and never a git
# repository: the default cache, `$XDG_CACHE_HOME/stageserve`, also holds the registry
# mirrors, `mirrors/<name>-<hash>`).
_PACKAGE_FOLDER = re.compile(rf"^[^.].*-[0-9a-f]{{{SHORT_DIGEST_CHARS}}}$")


class PackageExporter(Protocol):
    """Writes the package files of one registered version into an empty folder."""

    def export_package(self, name: str, version: str, dest: Path) -> Path: ...


@dataclass(frozen=True)
class Materialized:
    model: str
    version: str
    path: Path
    digest: str


# (file, size, mtime_ns, ctime_ns, inode) for model.yaml and every file the manifest lists.
Fingerprint = tuple[tuple[str, int, int, int, int], ...]


@dataclass(frozen=True)
class _Verified:
    done: Materialized
    files: tuple[str, ...]
    fingerprint: Fingerprint


@dataclass
class Materializer:
    cache_dir: Path
    gc_grace_s: float = 600.0
    # (model, version, commit) -> what this process verified, and how its files looked then;
    # the registry's tags are immutable in practice, but a re-created tag would point
    # elsewhere, so the key includes the commit.
    _verified: dict[tuple[str, str, str], _Verified] = field(default_factory=dict)
    # folder -> monotonic time it was first seen unwanted
    _unwanted_since: dict[Path, float] = field(default_factory=dict)
    # Folders to re-hash in full before their next reuse (request_full_check).
    _full_check: set[Path] = field(default_factory=set)
    # Folders replaced because they no longer verified, since the caller last took the list.
    repaired: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Snapshot paths must be absolute: the gateway may run with another working folder.
        self.cache_dir = self.cache_dir.resolve()

    def request_full_check(self, folder: Path | str) -> None:
        """Re-hash this folder before it is next reused (and repair it if it fails)."""
        self._full_check.add(Path(folder).resolve())

    def materialize(
        self, exporter: PackageExporter, model: str, version: str, commit: str
    ) -> Materialized:
        """Return the verified cache folder of (model, version), exporting it if needed.

        Raises a PackageError (digest mismatch, missing file, bad manifest, unsafe link)
        naming the file, or a CacheError when the cache cannot be written (a full disk);
        nothing is left in the cache then.
        """
        try:
            return self._materialize(exporter, model, version, commit)
        except OSError as exc:
            raise CacheError(str(self.cache_dir), _os_reason(exc)) from exc

    def _materialize(
        self, exporter: PackageExporter, model: str, version: str, commit: str
    ) -> Materialized:
        key = (model, version, commit)
        known = self._verified.get(key)
        if known is not None and self._still_good(key, known):
            return known.done
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
                # but check it is still what it claims to be; replace it if it is not.
                try:
                    package = read_package(final, verify_digests=True)
                except PackageError as exc:
                    self._replace(final, tmp, reason=str(exc))
                    package = _moved(package, final)
            else:
                tmp.rename(final)
                package = _moved(package, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        done = Materialized(model=model, version=version, path=final, digest=package.digest)
        files = ("model.yaml", *(f.path for f in package.manifest.files))
        self._verified[key] = _Verified(done, files, _fingerprint(final, files))
        self._full_check.discard(final.resolve())
        return done

    def _still_good(self, key: tuple[str, str, str], known: _Verified) -> bool:
        """The cheap check before each reuse; a full re-hash when it fails or was asked for."""
        folder = known.done.path
        try:
            unchanged = _fingerprint(folder, known.files) == known.fingerprint
        except OSError:
            unchanged = False
        if unchanged and folder.resolve() not in self._full_check:
            return True
        try:
            read_package(folder, verify_digests=True)
        except PackageError as exc:
            log.warning(
                "cached package %s no longer verifies (%s): exporting it again", folder, exc
            )
            return False
        self._full_check.discard(folder.resolve())
        # Verified again: remember how the files look now (a `touch` is not corruption).
        self._verified[key] = _Verified(known.done, known.files, _fingerprint(folder, known.files))
        return True

    def _replace(self, final: Path, fresh: Path, *, reason: str) -> None:
        """Swap a cached folder that no longer verifies for a fresh, verified export."""
        log.warning("replacing cached package %s, which no longer verifies: %s", final, reason)
        # Renamed aside first (a temp name, so an interrupted repair is collected as garbage);
        # a reader sees the bad folder, then briefly none, then the good one.
        trash = final.parent / f"{_TMP_PREFIX}corrupt-{uuid.uuid4().hex[:8]}"
        final.rename(trash)
        fresh.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
        self.repaired.append(final)

    def take_repaired(self) -> list[Path]:
        """The folders repaired since the last call (the loop republishes the snapshot)."""
        repaired, self.repaired = self.repaired, []
        return repaired

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
                if not _is_package_folder(folder):
                    continue  # not a folder we made (the cache may hold other things): keep
                first_seen = self._unwanted_since.setdefault(resolved, now)
                if now - first_seen >= self.gc_grace_s:
                    shutil.rmtree(folder, ignore_errors=True)
                    self._unwanted_since.pop(resolved, None)
                    self._verified = {
                        k: v for k, v in self._verified.items() if v.done.path.resolve() != resolved
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


def _is_package_folder(folder: Path) -> bool:
    is_git = (folder / "HEAD").is_file() and (folder / "objects").is_dir()
    return bool(_PACKAGE_FOLDER.match(folder.name)) and not is_git


def _fingerprint(folder: Path, files: tuple[str, ...]) -> Fingerprint:
    out = []
    for name in files:
        st = os.stat(folder / name)
        out.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(out)


def _os_reason(exc: OSError) -> str:
    # "[Errno 28] No space left on device: '/cache/m/.tmp-v1-1a2b/model.onnx'" -> the reason
    # and the file, without the temporary folder's random name mattering to anyone.
    reason = exc.strerror or str(exc)
    return f"{reason} (errno {exc.errno})" if exc.errno else reason
