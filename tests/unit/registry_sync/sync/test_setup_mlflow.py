from __future__ import annotations

from pathlib import Path

import pytest

from registry_sync.errors import SettingsError
from registry_sync.mlflow.source import MlflowRegistry
from registry_sync.registry.trust.policy import TrustRule
from registry_sync.sync.setup import build_sync


def test_an_mlflow_uri_builds_an_mlflow_reader_without_contacting_the_server(
    tmp_path: Path,
) -> None:
    sync = build_sync("mlflow+http://127.0.0.1:9", tmp_path, mlflow_stages={"@champion": "prod"})
    assert isinstance(sync.reader, MlflowRegistry)
    assert sync.reader.display_location == "mlflow+http://127.0.0.1:9"
    assert sync.reader.stage_map.entries == (("@champion", "prod"),)


def test_a_trust_policy_with_an_mlflow_registry_is_refused_not_ignored(tmp_path: Path) -> None:
    rule = TrustRule(stages=["prod"], gpg_keys=["0" * 40])
    with pytest.raises(SettingsError, match="an MLflow registry has none"):
        build_sync("mlflow+http://127.0.0.1:9", tmp_path, trust=[rule])
