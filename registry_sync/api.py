"""The registry as Python calls: what the `stageserve registry` CLI does, plus `load`.

    >>> from registry_sync import api
    >>> api.register("cost_predictor", "build/cost_predictor", registry="models-repo")
    >>> api.assign("cost_predictor", "prod", "v0.0.1", registry="models-repo")
    >>> model = api.load("cost_predictor", stage="prod", registry="models-repo")
    >>> model.predict([{"hp": 110, "wt": 2.62, "cyl": 6}])

`registry` is a local path or a git URL (mirrored once, then fetched); `at` is a datetime,
an ISO 8601 string (naive means UTC) or unix seconds.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from registry_sync.registry.git import Signing
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.views import (
    HistoryEvent,
    ModelDetail,
    ModelSummary,
    StageResolution,
    TagWritten,
    parse_time,
)
from registry_sync.registry.writer import Bump

if TYPE_CHECKING:
    from registry_sync.runtimes import LoadedModel

__all__ = [
    "Signing",
    "assign",
    "deprecate",
    "deregister",
    "history",
    "list_models",
    "load",
    "open_registry",
    "register",
    "show",
    "unassign",
    "which",
]

Location = str | Path
Moment = datetime | str | int | float | None


def open_registry(registry: Location = ".", *, mirror_dir: Path | None = None) -> GitRegistry:
    return GitRegistry.open(registry, mirror_dir=mirror_dir)


def _unix(at: Moment) -> int | None:
    if at is None:
        return None
    if isinstance(at, datetime):
        return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())
    if isinstance(at, str):
        return parse_time(at)
    return int(at)


def register(
    name: str,
    path: Location,
    *,
    version: str | None = None,
    bump: Bump = "patch",
    registry: Location = ".",
    sign: Signing | None = None,
) -> TagWritten:
    """Commit the package folder `path` as the next (or the given) version of `name`."""
    return open_registry(registry).register(name, path, version=version, bump=bump, sign=sign)


def assign(
    name: str,
    stage: str,
    version: str,
    *,
    force: bool = False,
    registry: Location = ".",
    sign: Signing | None = None,
) -> TagWritten:
    """Tag the assignment; `sign=Signing(key=..., format="ssh")` (or `Signing()` for git's
    configured key) signs it, as a stage protected by a trust policy requires."""
    return open_registry(registry).assign(name, stage, version, force=force, sign=sign)


def unassign(
    name: str, stage: str, *, version: str | None = None, registry: Location = "."
) -> list[TagWritten]:
    return open_registry(registry).unassign(name, stage, version)


def deregister(name: str, version: str, *, registry: Location = ".") -> TagWritten:
    return open_registry(registry).deregister(name, version)


def deprecate(name: str, *, registry: Location = ".") -> TagWritten | None:
    return open_registry(registry).deprecate(name)


def which(
    name: str, stage: str = "prod", *, at: Moment = None, registry: Location = "."
) -> StageResolution:
    """The version serving `stage` (at time `at`, if given)."""
    return open_registry(registry).which(name, stage, at=_unix(at))


def history(name: str | None = None, *, registry: Location = ".") -> list[HistoryEvent]:
    return open_registry(registry).history(name)


def list_models(
    *, label: str | None = None, search: str | None = None, registry: Location = "."
) -> list[ModelSummary]:
    return open_registry(registry).list_models(label=label, search=search)


def show(name: str, *, registry: Location = ".") -> ModelDetail:
    return open_registry(registry).show(name)


def load(
    name: str,
    stage: str | None = "prod",
    *,
    version: str | None = None,
    at: Moment = None,
    registry: Location = ".",
    cache_dir: Path | None = None,
    prefer_onnx: bool = True,
) -> LoadedModel:
    """The model serving `stage` (now, or at `at`), or a given `version`, ready to predict.

    The package is exported from the version's commit into `cache_dir` (kept there and
    reused), or without one into a temporary folder that is removed once the model is in
    memory; every artifact's sha256 is checked before it is loaded.
    """
    from registry_sync.package.read import read_package
    from registry_sync.runtimes import LoadedModel, load_predictor

    reg = open_registry(registry)
    if version is None:
        if stage is None:
            raise ValueError("load needs a stage or a version")
        version = reg.which(name, stage, at=_unix(at)).version
    commit = reg.version_state(name, version).commit
    if cache_dir is None:
        # Every runtime reads its artifacts into memory on load: nothing needs the files after.
        with tempfile.TemporaryDirectory(prefix="stageserve-load-") as scratch:
            package = read_package(reg.export_package(name, version, Path(scratch) / name))
            predictor = load_predictor(package, prefer_onnx=prefer_onnx)
        return LoadedModel(predictor, package, version=version)
    # Keyed by commit too: a tag deleted and made again elsewhere is another package.
    dest = Path(cache_dir) / name / f"{version}-{commit[:12]}"
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Export beside and rename: a half-written folder is never taken for a package.
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
        reg.export_package(name, version, tmp)
        try:
            tmp.rename(dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process got there first
    package = read_package(dest)
    return LoadedModel(load_predictor(package, prefer_onnx=prefer_onnx), package, version=version)
