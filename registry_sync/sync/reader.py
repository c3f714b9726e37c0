"""The registry as the sync loop reads it: opened lazily, re-checked on every poll.

Opening lazily matters: a gateway that starts while its registry is unreachable must still
start (and serve what its cache holds); the outage is then one failed poll, not a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from registry_sync.errors import ManifestError, RegistryUnreachableError
from registry_sync.package.manifest import Manifest
from registry_sync.registry.git import DanglingRef, redact_url
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.remote import is_url
from registry_sync.registry.timeline import RegistryHistory, build_history
from registry_sync.registry.trust import TagTrust, TrustPolicy
from registry_sync.registry.views import RefusedAssignment, ResolvedStage

__all__ = ["LazyRegistryReader", "open_reader"]


class LazyRegistryReader:
    def __init__(
        self,
        location: str,
        *,
        mirror_dir: Path,
        models_dir: str = "models",
        trust: TrustPolicy | None = None,
    ) -> None:
        self.location = location
        self.mirror_dir = mirror_dir
        self.models_dir = models_dir
        self.trust = trust
        self._registry: GitRegistry | None = None
        # (model, commit) -> its manifest: a commit's files never change.
        self._manifests: dict[tuple[str, str], Manifest | None] = {}
        # Tags the last resolve skipped because their object is missing.
        self.skipped_refs: list[DanglingRef] = []

    @property
    def display_location(self) -> str:
        return redact_url(self.location) if is_url(self.location) else self.location

    def refresh(self) -> None:
        if self._registry is None:
            self._registry = GitRegistry.open(
                self.location, mirror_dir=self.mirror_dir, models_dir=self.models_dir
            )
            if self.trust:
                self._registry.trust = TagTrust(self._registry.git, self.trust)
            return
        if self._registry.mirror is None and not Path(self.location).is_dir():
            # A local registry moved away: say so plainly instead of a git error.
            raise RegistryUnreachableError(self.location, "the folder no longer exists")
        self._registry.refresh()

    def resolve_stages(
        self, *, stages: Sequence[str] | None = None, models: Sequence[str] | None = None
    ) -> list[ResolvedStage]:
        registry = self._opened()
        view = registry.view()
        self.skipped_refs = list(view.dangling)
        return registry.resolve_stages(stages=stages, models=models, view=view)

    def refused_assignments(
        self, *, stages: Sequence[str] | None = None, models: Sequence[str] | None = None
    ) -> list[RefusedAssignment]:
        if not self.trust:
            return []
        return self._opened().refused_assignments(stages=stages, models=models)

    def export_package(self, name: str, version: str, dest: Path) -> Path:
        return self._opened().export_package(name, version, dest)

    def registry_history(
        self,
        *,
        generated_at: str,
        stages: Sequence[str] | None,
        models: Sequence[str] | None,
    ) -> RegistryHistory:
        return build_history(
            self._opened(),
            generated_at=generated_at,
            stages=stages,
            models=models,
            manifest_at=self._manifest_at,
        )

    def _manifest_at(self, model: str, commit: str) -> Manifest | None:
        key = (model, commit)
        if key not in self._manifests:
            try:
                self._manifests[key] = self._opened().manifest_at(model, commit)
            except ManifestError:
                self._manifests[key] = None
        return self._manifests[key]

    def registry(self) -> GitRegistry:
        """The registry, opened (with the trust policy) on first use: past versions for
        as-of requests are resolved with the same rules the sync follows."""
        return self._opened()

    def _opened(self) -> GitRegistry:
        if self._registry is None:
            self.refresh()
        assert self._registry is not None
        return self._registry


def open_reader(
    location: str, *, mirror_dir: Path, trust: TrustPolicy | None = None
) -> LazyRegistryReader:
    return LazyRegistryReader(location, mirror_dir=mirror_dir, trust=trust)
