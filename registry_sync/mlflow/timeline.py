"""The console's view of an MLflow registry (`registry-history.json`), from the stage history
the sync recorded: MLflow keeps none, so the timeline starts when the sync first followed it."""

from __future__ import annotations

from collections.abc import Sequence

from registry_sync.mlflow.history import StageEvent
from registry_sync.registry.timeline import (
    AssignedBand,
    ModelHistory,
    RegistryHistory,
    StageEventRecord,
    VersionRecord,
)

__all__ = ["build_mlflow_history"]


def build_mlflow_history(
    events: Sequence[StageEvent],
    *,
    registry: str,
    generated_at: str,
    stages: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
) -> RegistryHistory:
    by_model: dict[str, list[StageEvent]] = {}
    for event in events:
        if models is not None and event.model not in models:
            continue
        if stages is not None and event.stage not in stages:
            continue
        by_model.setdefault(event.model, []).append(event)
    return RegistryHistory(
        generated_at=generated_at,
        registry=registry,
        models=[_model(name, found) for name, found in sorted(by_model.items())],
    )


def _model(name: str, events: list[StageEvent]) -> ModelHistory:
    versions: dict[str, VersionRecord] = {}
    bands: list[AssignedBand] = []
    open_band: dict[str, AssignedBand] = {}
    for event in events:
        if event.version is not None and event.version not in versions:
            versions[event.version] = VersionRecord(
                version=event.version,
                commit=(event.source or "").removeprefix("models:/"),
                # MLflow's registration time is not recorded here: first seen by the sync.
                registered_at=None,
            )
        assigned = event.version if event.event == "assignment" else None
        previous = open_band.pop(event.stage, None)
        if previous is not None:
            bands.append(
                AssignedBand(
                    stage=previous.stage,
                    version=previous.version,
                    start=previous.start,
                    end=event.time,
                )
            )
        open_band[event.stage] = AssignedBand(stage=event.stage, version=assigned, start=event.time)
    bands.extend(open_band.values())
    return ModelHistory(
        name=name,
        description="MLflow registered model",
        versions=sorted(versions.values(), key=lambda v: _number(v.version)),
        events=[
            StageEventRecord(
                at=e.time, stage=e.stage, kind=e.event, version=e.version, tag=e.via or ""
            )
            for e in events
        ],
        assigned=sorted(bands, key=lambda b: (b.stage, b.start)),
    )


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
