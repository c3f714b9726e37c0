"""The parts of MLflow's REST API the sync reads, as msgspec Structs (unknown fields ignored:
newer servers add fields, and none of them changes what these mean)."""

from __future__ import annotations

import msgspec

__all__ = [
    "ArtifactFile",
    "ArtifactList",
    "DownloadUri",
    "ModelVersion",
    "ModelVersionPage",
    "RegisteredModel",
    "RegisteredModelAlias",
    "RegisteredModelPage",
]


class RegisteredModelAlias(msgspec.Struct, frozen=True, kw_only=True):
    alias: str
    version: str


class ModelVersion(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    # The legacy stage: "None", "Staging", "Production" or "Archived".
    current_stage: str = "None"
    # "runs:/<run>/model", "models:/m-<id>" (MLflow 3), or an artifact URI.
    source: str = ""
    run_id: str = ""
    # PENDING_REGISTRATION, FAILED_REGISTRATION or READY: only READY versions are served.
    status: str = "READY"


class RegisteredModel(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    description: str = ""
    aliases: list[RegisteredModelAlias] = []


class RegisteredModelPage(msgspec.Struct, frozen=True, kw_only=True):
    registered_models: list[RegisteredModel] = []
    next_page_token: str | None = None


class ModelVersionPage(msgspec.Struct, frozen=True, kw_only=True):
    model_versions: list[ModelVersion] = []
    next_page_token: str | None = None


class DownloadUri(msgspec.Struct, frozen=True, kw_only=True):
    artifact_uri: str


class ArtifactFile(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    is_dir: bool = False
    file_size: int | None = None


class ArtifactList(msgspec.Struct, frozen=True, kw_only=True):
    files: list[ArtifactFile] = []
