"""The MLflow Model Registry as a registry source: its REST API polled, aliases and legacy
stages mapped to stages, each version's MLmodel directory turned into a verified package."""

from registry_sync.mlflow.location import MlflowLocation, is_mlflow_uri
from registry_sync.mlflow.source import MlflowRegistry
from registry_sync.mlflow.stage_map import StageMap

__all__ = ["MlflowLocation", "MlflowRegistry", "StageMap", "is_mlflow_uri"]
