"""`MlflowRegistry`: an MLflow tracking server read as a stageserve registry.

It is a RegistryReader (registry_sync/sync/registry_sync.py), so the sync loop, the cache, the
snapshot and everything the gateway does are the same as for a git registry. Each poll reads
every registered model, its versions and aliases, maps them to stages (stage_map.py) and
records what changed (history.py). A stage whose alias (or version) disappears keeps its last
version: deleting is not promoting, and serving nothing would fail every client at once.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from registry_sync.errors import (
    ManifestError,
    ModelNotFoundError,
    NoVersionInStageError,
    PackageError,
    RegistryError,
)
from registry_sync.mlflow.client import MlflowClient, artifact_path
from registry_sync.mlflow.history import HISTORY_FILE, StageEvent, StageHistory
from registry_sync.mlflow.location import MlflowLocation
from registry_sync.mlflow.mlmodel import MODEL_FILE, example_rows, pick_flavor, read_signature
from registry_sync.mlflow.pins import PINS_FILE, VersionPins
from registry_sync.mlflow.rest import ArtifactFile, RegisteredModel
from registry_sync.mlflow.stage_map import StageMap
from registry_sync.package.manifest import ColumnSpec, FileEntry, Manifest, ModelCard
from registry_sync.package.read import check_example, sha256_file, write_manifest
from registry_sync.registry.timeline import RegistryHistory
from registry_sync.registry.views import (
    HistoryEvent,
    ResolvedStage,
    StageResolution,
    iso_time,
)

__all__ = ["STATE_DIRNAME", "MlflowRegistry", "state_dir_for"]

log = logging.getLogger(__name__)

# Inside the cache: `.mlflow-<host-port>/` holds the history and the pins (no credentials).
STATE_DIRNAME = ".mlflow-{slug}"
# A model name that is safe as a folder name and a URL segment.
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_EXAMPLE_VALUES: dict[str, Any] = {
    "double": 0.0,
    "float": 0.0,
    "long": 0,
    "integer": 0,
    "boolean": False,
    "string": "",
}


def state_dir_for(location: MlflowLocation, cache_dir: Path) -> Path:
    return cache_dir / STATE_DIRNAME.format(slug=location.slug)


class MlflowRegistry:
    def __init__(
        self,
        location: MlflowLocation,
        state_dir: Path,
        *,
        stage_map: StageMap | None = None,
        client: MlflowClient | None = None,
    ) -> None:
        self.location = location
        self.state_dir = state_dir
        self.stage_map = stage_map or StageMap()
        self.client = client or MlflowClient(location)
        self.history = StageHistory(state_dir / HISTORY_FILE)
        self.pins = VersionPins(state_dir / PINS_FILE)
        self._warned: set[str] = set()

    @classmethod
    def open(
        cls,
        uri: str,
        cache_dir: Path,
        *,
        environ: Mapping[str, str],
        stage_map: Mapping[str, str] | None = None,
    ) -> MlflowRegistry:
        location = MlflowLocation.parse(uri, environ)
        return cls(
            location, state_dir_for(location, cache_dir), stage_map=StageMap.from_setting(stage_map)
        )

    @property
    def display_location(self) -> str:
        return self.location.display

    def refresh(self) -> None:
        """Nothing to fetch ahead: every poll reads the server (resolve_stages)."""

    # -- what the sync reads --------------------------------------------------------------

    def assignments(
        self, models: Sequence[str] | None = None
    ) -> dict[tuple[str, str], tuple[str, str, str]]:
        """(model, stage) -> (version, via, source) as the server says now."""
        found: dict[tuple[str, str], tuple[str, str, str]] = {}
        for model in self._models(models):
            versions = {v.version: v for v in self.client.model_versions(model.name)}
            for assignment in self.stage_map.assignments(model, versions.values()):
                source = versions[assignment.version].source
                found[(model.name, assignment.stage)] = (
                    assignment.version,
                    assignment.via,
                    source,
                )
        return found

    def resolve_stages(
        self, *, stages: Sequence[str] | None = None, models: Sequence[str] | None = None
    ) -> list[ResolvedStage]:
        assigned = self.assignments(models)
        for event in self.history.observe(
            assigned, time.time(), models=set(models) if models is not None else None
        ):
            if event.event == "assignment":
                log.info(
                    "%s#%s -> version %s (%s)", event.model, event.stage, event.version, event.via
                )
            else:
                log.warning(
                    "%s#%s lost its alias or version in MLflow; version %s keeps serving",
                    event.model,
                    event.stage,
                    event.version,
                )
        serving = {key: (version, source) for key, (version, _, source) in assigned.items()}
        for key, event in self.history.last_assigned().items():
            followed = models is None or key[0] in models
            if key not in serving and event.version is not None and followed:
                serving[key] = (event.version, event.source or "")
        return [
            ResolvedStage(model, stage, version, f"mlflow:{source}")
            for (model, stage), (version, source) in sorted(serving.items())
            if stages is None or stage in stages
        ]

    def export_package(self, name: str, version: str, dest: Path) -> Path:
        """Download the version's MLmodel directory (what serving needs of it) into `dest`
        and write the model.yaml that pins it; refuse files that changed since first seen."""
        where = f"{name} version {version}"
        try:
            return self._export(name, version, dest, where)
        except RegistryError:
            raise
        except Exception as exc:
            # Whatever a registry writer logged, it is that version's problem, never the sync's.
            log.exception("%s: unexpected failure reading it", where)
            raise PackageError(where, f"cannot read it: {type(exc).__name__}: {exc}") from exc

    def _export(self, name: str, version: str, dest: Path, where: str) -> Path:
        root = artifact_path(self.client.download_uri(name, version))
        listed = {f.path.rsplit("/", 1)[-1]: f for f in self.client.list_artifacts(root)}
        dest.mkdir(parents=True, exist_ok=True)
        self._download(root, MODEL_FILE, dest, listed, where)
        try:
            mlmodel = yaml.safe_load((dest / MODEL_FILE).read_bytes())
        except yaml.YAMLError as exc:
            raise ManifestError(where, f"{MODEL_FILE} is not valid YAML: {exc}") from None
        if not isinstance(mlmodel, dict):
            raise ManifestError(where, f"{MODEL_FILE} is not a mapping")
        flavor = pick_flavor(mlmodel, where)
        signature = read_signature(mlmodel, where)
        self._download(root, flavor.model_file, dest, listed, where)
        names = [flavor.model_file, MODEL_FILE]
        example = self._example(root, mlmodel, dest, listed, signature.inputs)
        if example[1] is not None:
            names.append(example[1])
        digests = {relative: sha256_file(dest / relative) for relative in names}
        source = self._source(name, version)
        self.pins.check_and_pin(name, version, source, digests, iso_time(int(time.time())))
        manifest = Manifest(
            name=name,
            format=flavor.format,  # type: ignore[arg-type]
            files=[
                FileEntry(path=p, sha256=digests[p], size_bytes=(dest / p).stat().st_size)
                for p in names
            ],
            signature=signature,
            input_example=example[0],
            card=ModelCard(description=f"MLflow model {name} version {version} ({source})"),
            libraries=_libraries(mlmodel, flavor.mlflow_flavor),
        )
        write_manifest(manifest, dest)
        return dest

    # -- what the CLI asks ----------------------------------------------------------------

    def which(self, name: str, stage: str, *, at: float | None = None) -> StageResolution:
        if at is None:
            assigned = self.assignments([name])
            found = assigned.get((name, stage))
            if found is None:
                if not any(model == name for model, _ in assigned) and not self._exists(name):
                    raise ModelNotFoundError(name, [m.name for m in self._models(None)])
                raise NoVersionInStageError(name, stage)
            since = self.history.current().get((name, stage))
            assigned_at = since.time if since and since.version == found[0] else ""
            return StageResolution(
                model=name,
                stage=stage,
                version=found[0],
                commit=_short(found[2]),
                assigned_at=assigned_at,
            )
        event = self.history.at(name, stage, at)
        if event is None:
            first = self.history.first_seen_s()
            note = ""
            if first is None or at < first:
                followed = iso_time(int(first)) if first is not None else "never"
                note = f" (the sync has followed this registry since {followed})"
            raise NoVersionInStageError(name, stage, iso_time(int(at)) + note)
        return StageResolution(
            model=name,
            stage=stage,
            version=event.version or "",
            commit=_short(event.source or ""),
            assigned_at=event.time,
            at=iso_time(int(at)),
        )

    def stage_history(self, name: str | None = None) -> list[HistoryEvent]:
        return [
            _history_event(event)
            for event in self.history.load().events
            if name is None or event.model == name
        ]

    def registry_history(
        self,
        *,
        generated_at: str,
        stages: Sequence[str] | None,
        models: Sequence[str] | None,
    ) -> RegistryHistory:
        """For the console (`<cache>/registry-history.json`): the recorded stage history."""
        from registry_sync.mlflow.timeline import build_mlflow_history

        return build_mlflow_history(
            self.history.load().events,
            registry=self.display_location,
            generated_at=generated_at,
            stages=stages,
            models=models,
        )

    # -- helpers --------------------------------------------------------------------------

    def _models(self, only: Sequence[str] | None) -> list[RegisteredModel]:
        found = []
        for model in self.client.registered_models():
            if only is not None and model.name not in only:
                continue
            if not _NAME_RE.match(model.name):
                if model.name not in self._warned:
                    self._warned.add(model.name)
                    log.warning(
                        "MLflow model %r is not followed: stageserve names models with "
                        "letters, digits, '.', '_' and '-'",
                        model.name,
                    )
                continue
            found.append(model)
        return found

    def _exists(self, name: str) -> bool:
        return any(model.name == name for model in self.client.registered_models())

    def _source(self, name: str, version: str) -> str:
        for found in self.client.model_versions(name):
            if found.version == version:
                return found.source
        raise PackageError(f"{name} version {version}", "no longer on the tracking server")

    def _download(
        self, root: str, relative: str, dest: Path, listed: dict[str, ArtifactFile], where: str
    ) -> None:
        if "/" not in relative and relative not in listed:
            raise PackageError(where, f"{relative} is not among the version's artifacts")
        entry = listed.get(relative)
        self.client.download(
            f"{root}/{relative}",
            dest / relative,
            expected_size=entry.file_size if entry is not None else None,
        )

    def _example(
        self,
        root: str,
        mlmodel: dict[str, Any],
        dest: Path,
        listed: dict[str, ArtifactFile],
        inputs: list[ColumnSpec],
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The saved input example when it fits the signature, else one made-up row (the
        gateway warms a version up on it before routing to it)."""
        info = mlmodel.get("saved_input_example_info")
        where = f"{mlmodel.get('model_id') or root}"
        relative = info.get("artifact_path") if isinstance(info, dict) else None
        if isinstance(relative, str) and relative in listed:
            self._download(root, relative, dest, listed, where)
            try:
                import json

                rows = example_rows(json.loads((dest / relative).read_bytes()), inputs)
                check_example(rows, inputs)
                return rows, relative
            except (ValueError, TypeError) as exc:
                log.warning("%s: input example not used (%s)", where, exc)
                (dest / relative).unlink(missing_ok=True)
        return [{spec.name: _EXAMPLE_VALUES[spec.type] for spec in inputs}], None


def _libraries(mlmodel: dict[str, Any], flavor: str) -> dict[str, str]:
    found = {"mlflow": str(mlmodel.get("mlflow_version") or "")}
    details = (mlmodel.get("flavors") or {}).get(flavor) or {}
    for key, value in details.items():
        if str(key).endswith("_version") and value:
            found[str(key).removesuffix("_version")] = str(value)
    python = ((mlmodel.get("flavors") or {}).get("python_function") or {}).get("python_version")
    if python:
        found["python"] = str(python)
    return {k: v for k, v in found.items() if v}


def _history_event(event: StageEvent) -> HistoryEvent:
    return HistoryEvent(
        time=event.time,
        event=event.event,
        model=event.model,
        commit=_short(event.source or ""),
        tag=event.via or "",
        version=event.version,
        stage=event.stage,
    )


def _short(source: str) -> str:
    """`models:/m-<id>` -> `m-<id>`: what the commit column shows for an MLflow version."""
    return source.removeprefix("models:/")
