"""Which MLflow alias or legacy stage feeds which stageserve stage (the `mlflow_stages` setting).

Keys are `@alias` (MLflow's aliases, e.g. `@champion`) or a legacy stage name (`Production`,
`Staging`); values are stageserve stages. Without a mapping the default applies: every alias
is the stage of the same name (`@prod` -> `prod`), `Production` -> `prod`, `Staging` ->
`staging`. When several sources feed one stage, the first in the mapping's order that names
a servable version wins; in the default, aliases come before legacy stages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from registry_sync.errors import SettingsError
from registry_sync.mlflow.rest import ModelVersion, RegisteredModel
from registry_sync.registry.gto_tags import check_name

__all__ = ["DEFAULT_LEGACY_STAGES", "Assignment", "StageMap"]

DEFAULT_LEGACY_STAGES: dict[str, str] = {"Production": "prod", "Staging": "staging"}
_LEGACY = ("Production", "Staging", "Archived", "None")


@dataclass(frozen=True)
class Assignment:
    stage: str
    version: str
    # What assigned it, as MLflow shows it: "@prod" or "Production".
    via: str


@dataclass(frozen=True)
class StageMap:
    """`entries` is None for the default mapping, else (source, stage) pairs in order."""

    entries: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def from_setting(cls, mapping: Mapping[str, str] | None) -> StageMap:
        if not mapping:
            return cls()
        entries = []
        for source, stage in mapping.items():
            if source.startswith("@"):
                if not source[1:]:
                    raise SettingsError("mlflow_stages", "settings", "an empty alias: '@'")
            elif source not in _LEGACY[:2]:
                raise SettingsError(
                    "mlflow_stages",
                    "settings",
                    f"{source!r} is neither an alias ('@name') nor a legacy stage "
                    "(Production, Staging)",
                )
            try:
                check_name(str(stage), "stage")
            except Exception as exc:
                raise SettingsError("mlflow_stages", "settings", str(exc)) from None
            entries.append((source, str(stage)))
        return cls(tuple(entries))

    def assignments(
        self, model: RegisteredModel, versions: Iterable[ModelVersion]
    ) -> list[Assignment]:
        """Stage -> version for one model, over its READY versions only."""
        ready = {v.version: v for v in versions if v.status == "READY"}
        by_source: dict[str, str] = {}
        # Legacy stages: the newest version in a stage (MLflow allows several).
        for candidate in sorted(ready.values(), key=_number):
            if candidate.current_stage in _LEGACY[:2]:
                by_source[candidate.current_stage] = candidate.version
        for alias in model.aliases:
            if alias.version in ready:
                by_source["@" + alias.alias] = alias.version
        found: dict[str, Assignment] = {}
        for source, stage in self._pairs(by_source):
            version = by_source.get(source)
            if version is not None and stage not in found:
                found[stage] = Assignment(stage=stage, version=version, via=source)
        return [found[stage] for stage in sorted(found)]

    def _pairs(self, by_source: Mapping[str, str]) -> list[tuple[str, str]]:
        if self.entries is not None:
            return list(self.entries)
        aliases = sorted(source for source in by_source if source.startswith("@"))
        pairs = [(source, source[1:]) for source in aliases if _is_stage_name(source[1:])]
        return pairs + list(DEFAULT_LEGACY_STAGES.items())

    def describe(self) -> str:
        if self.entries is None:
            return "@alias -> alias, Production -> prod, Staging -> staging"
        return ", ".join(f"{source} -> {stage}" for source, stage in self.entries)


def _is_stage_name(name: str) -> bool:
    try:
        check_name(name, "stage")
    except Exception:
        return False
    return True


def _number(version: ModelVersion) -> tuple[int, str]:
    return (int(version.version), "") if version.version.isdigit() else (0, version.version)
