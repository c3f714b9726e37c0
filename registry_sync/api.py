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
from typing import TYPE_CHECKING, Literal

from registry_sync.errors import HistoryQueryError
from registry_sync.history.events import parse_time as parse_instant
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
    name: str,
    stage: str,
    *,
    version: str | None = None,
    registry: Location = ".",
    sign: Signing | None = None,
) -> list[TagWritten]:
    return open_registry(registry).unassign(name, stage, version, sign=sign)


def deregister(
    name: str, version: str, *, registry: Location = ".", sign: Signing | None = None
) -> TagWritten:
    """Withdraw a version; in a stage a trust policy protects, only a signed tag counts."""
    return open_registry(registry).deregister(name, version, sign=sign)


def deprecate(
    name: str, *, registry: Location = ".", sign: Signing | None = None
) -> TagWritten | None:
    """Deprecate a model; while it serves a protected stage, only a signed tag counts."""
    return open_registry(registry).deprecate(name, sign=sign)


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
    as_of: Moment = None,
    basis: Literal["served", "assigned"] = "served",
    journal: Location | None = None,
    at: Moment = None,
    registry: Location = ".",
    cache_dir: Path | None = None,
    prefer_onnx: bool = True,
) -> LoadedModel:
    """The model serving `stage` now, or as of a past instant, or a given `version`, ready
    to predict.

    `as_of` with `basis="served"` (the default) loads the version that really served the
    stage then, by the gateway's activation `journal` (its JSON-lines file, or the
    `postgresql://` URL of its history store), and checks that the registry's package still
    has the digest that served (HistoryQueryError otherwise: reason `digest_mismatch`;
    `before_first_activation` with the earliest instant there is an answer for;
    `no_journal`). `basis="assigned"` (or `at=`, its older spelling) loads what the registry
    assigned then. The package is exported from the version's commit into `cache_dir` (kept
    there and reused), or without one into a temporary folder that is removed once the model
    is in memory; every artifact's sha256 is checked before it is loaded.
    """
    from registry_sync.package.read import read_package
    from registry_sync.runtimes import LoadedModel, load_predictor

    reg = open_registry(registry)
    served_digest = None
    if as_of is not None and basis == "served":
        if stage is None or version is not None:
            raise ValueError("as_of needs a stage, and no version")
        version, served_digest = _served(name, stage, _instant(as_of), journal)
    elif as_of is not None:
        at = as_of
    if version is None:
        if stage is None:
            raise ValueError("load needs a stage or a version")
        version = reg.which(name, stage, at=_unix(at)).version
    commit = reg.version_state(name, version).commit
    if cache_dir is None:
        # Every runtime reads its artifacts into memory on load: nothing needs the files after.
        with tempfile.TemporaryDirectory(prefix="stageserve-load-") as scratch:
            package = read_package(reg.export_package(name, version, Path(scratch) / name))
            _check_served(package.digest, served_digest, name, version)
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
    _check_served(package.digest, served_digest, name, version)
    return LoadedModel(load_predictor(package, prefer_onnx=prefer_onnx), package, version=version)


def _instant(moment: Moment) -> datetime:
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if isinstance(moment, str):
        return parse_instant(moment)
    assert moment is not None
    return datetime.fromtimestamp(float(moment), UTC)


def _served(
    name: str, stage: str, at: datetime, journal: Location | None
) -> tuple[str, str | None]:
    """(version, digest) that served name#stage at `at`, by the activation journal."""
    from registry_sync.history.events import first_activation, iso, served_at
    from registry_sync.history.store import journal_events

    if journal is None:
        raise HistoryQueryError(
            "basis='served' needs journal=: the gateway's activation journal (a file) or its "
            "history store (postgresql://...); basis='assigned' asks the registry instead",
            reason="no_journal",
        )
    events = journal_events(journal)
    answer = served_at(events, name, stage, at)
    if answer.version is not None:
        return answer.version, answer.digest
    first = first_activation(events, name, stage)
    if first is None:
        raise HistoryQueryError(
            f"the journal has no activation of {name}#{stage}", reason="never_served"
        )
    if at < parse_instant(first.at):
        raise HistoryQueryError(
            f"{iso(at)} is before {name}#{stage} first served ({first.at})",
            reason="before_first_activation",
            earliest=first.at,
        )
    raise HistoryQueryError(
        f"nothing served {name}#{stage} at {iso(at)}", reason="nothing_served", earliest=first.at
    )


def _check_served(digest: str, served: str | None, name: str, version: str) -> None:
    if served is not None and digest != served:
        raise HistoryQueryError(
            f"{name} {version} cannot be reproduced: the registry's package has digest "
            f"{digest}, the one that served had {served}",
            reason="digest_mismatch",
        )
