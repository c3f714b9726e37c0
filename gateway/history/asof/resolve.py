"""From (model, stage, instant, basis) to a loaded past version.

basis `served` (the default) asks the activation journal which version really served the
stage then, and takes its digest from there: the package fetched must have that digest, or
the answer would not be what was served. basis `assigned` asks the registry's intent (through
the sync in sidecar mode). Answers about instants more than a minute old cannot change (tags
carry truthful times, the journal only grows), so they are remembered.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import (
    HistoryNotFoundError,
    HistoryUnavailableError,
    ModelLoadError,
    VersionUnavailableError,
)
from gateway.history.asof.pool import AsOfPool
from gateway.history.asof.query import AsOf
from gateway.history.store import GatewayHistory
from gateway.pool.loaded import LoadedVersion
from registry_sync.errors import HistoryQueryError, RegistryError
from registry_sync.history.events import first_activation, parse_time, served_at
from registry_sync.sync.past import PastPackage, ask

__all__ = ["AsOfResolver", "AskTheSync", "PackageSource", "PastVersion"]

_SETTLED_S = 60.0
_CACHE_MAX = 1024


class PackageSource(Protocol):
    """Where past packages come from (blocking; run on the as-of pool's thread)."""

    def fetch(
        self,
        model: str,
        *,
        version: str | None = None,
        stage: str | None = None,
        at: float | None = None,
    ) -> PastPackage: ...


class AskTheSync:
    """Sidecar mode: the sync materializes past versions on request (registry_sync/sync/past)."""

    def __init__(self, requests_dir: Path, timeout_s: float) -> None:
        self.requests_dir = requests_dir
        self.timeout_s = timeout_s

    def fetch(
        self,
        model: str,
        *,
        version: str | None = None,
        stage: str | None = None,
        at: float | None = None,
    ) -> PastPackage:
        return ask(
            self.requests_dir, model, version=version, stage=stage, at=at, timeout_s=self.timeout_s
        )


@dataclass(frozen=True)
class PastVersion:
    model: str
    stage: str
    version: str
    digest: str | None
    # When it started serving (served) or was assigned (assigned).
    since: str | None
    package: PastPackage | None = None


class AsOfResolver:
    def __init__(
        self, history: GatewayHistory, source: PackageSource | None, pool: AsOfPool
    ) -> None:
        self.history = history
        self.source = source
        self.pool = pool
        self._assigned: OrderedDict[tuple[str, str, int], PastPackage] = OrderedDict()

    async def resolve(self, model: str, stage: str, as_of: AsOf) -> PastVersion:
        if as_of.basis == "served":
            return await self._served(model, stage, as_of)
        return await self._assigned_at(model, stage, as_of)

    async def _served(self, model: str, stage: str, as_of: AsOf) -> PastVersion:
        events = await self.history.run(self.history.journal)
        answer = served_at(events, model, stage, as_of.at)
        if answer.version is None:
            first = first_activation(events, model, stage)
            if first is None:
                raise HistoryNotFoundError(
                    f"the activation journal has no activation of {model}#{stage}",
                    {"basis": "served", "reason": "never_served"},
                )
            if as_of.at_s < parse_time(first.at).timestamp():
                raise HistoryNotFoundError(
                    f"{as_of.text} is before {model}#{stage} first served ({first.at})",
                    {"basis": "served", "reason": "before_first_activation", "earliest": first.at},
                )
            raise HistoryNotFoundError(
                f"nothing served {model}#{stage} at {as_of.text}",
                {"basis": "served", "reason": "nothing_served", "earliest": first.at},
            )
        return PastVersion(model, stage, answer.version, answer.digest, answer.since)

    async def _assigned_at(self, model: str, stage: str, as_of: AsOf) -> PastVersion:
        source = self._need_source()
        key = (model, stage, int(as_of.at_s))
        package = self._assigned.get(key)
        if package is None:
            package = await self._fetch(source, model, stage=stage, at=as_of.at_s)
            if as_of.at_s < time.time() - _SETTLED_S:
                self._assigned[key] = package
                if len(self._assigned) > _CACHE_MAX:
                    self._assigned.popitem(last=False)
        else:
            self._assigned.move_to_end(key)
        return PastVersion(
            model, stage, package.version, package.digest, package.assigned_at, package
        )

    async def acquire(self, past: PastVersion) -> LoadedVersion:
        """The loaded version (fetched, verified and loaded when not in memory). Nothing is
        awaited after it is found or loaded: the caller pins it in the same step."""
        lv = self.pool.cached(past.model, past.version, past.digest)
        if lv is not None:
            return lv
        package = past.package
        if package is None:
            package = await self._fetch(self._need_source(), past.model, version=past.version)
        if past.digest is not None and package.digest != past.digest:
            raise VersionUnavailableError(
                f"{past.model} {past.version} cannot be reproduced: the registry's package now "
                f"has digest {package.digest}, the one that served had {past.digest}",
                {"reason": "digest_mismatch", "version": past.version},
            )
        try:
            return await self.pool.load(
                past.model, past.version, package.digest, package.package_path
            )
        except ModelLoadError as exc:
            raise VersionUnavailableError(
                f"{past.model} {past.version} could not be loaded: {exc.reason}",
                {"reason": "load_failed", "version": past.version},
            ) from None

    def _need_source(self) -> PackageSource:
        if self.source is None:
            raise HistoryNotFoundError(
                "this gateway cannot fetch past versions (no registry, no cache)",
                {"reason": "no_registry"},
            )
        return self.source

    async def _fetch(
        self,
        source: PackageSource,
        model: str,
        *,
        version: str | None = None,
        stage: str | None = None,
        at: float | None = None,
    ) -> PastPackage:
        try:
            result: PastPackage = await self.pool.run(
                lambda: source.fetch(model, version=version, stage=stage, at=at)
            )
        except HistoryQueryError as exc:
            details = {"reason": exc.reason, **({"earliest": exc.earliest} if exc.earliest else {})}
            if exc.reason in ("nothing_assigned", "no_sync"):
                raise HistoryNotFoundError(str(exc), {"basis": "assigned", **details}) from None
            if exc.reason == "unanswered":
                raise HistoryUnavailableError(str(exc), details) from None
            raise VersionUnavailableError(str(exc), details) from None
        except RegistryError as exc:  # the registry itself (embedded mode) cannot be read
            raise HistoryUnavailableError(
                f"the registry cannot be read: {exc}", {"reason": "registry"}
            ) from None
        return result
