"""The sync's settings: the same layering as serve's, from the same file."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.settings import Settings, load_settings
from registry_sync.errors import SettingsError
from registry_sync.sync.settings import SyncSettings, load_sync_settings


def test_flags_beat_env_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("registry: /r\ncache_dir: /c\npoll_interval_s: 3\nstages: prod\n")
    environ = {"STAGESERVE_POLL_INTERVAL_S": "4", "STAGESERVE_STAGES": "dev"}
    got = load_sync_settings({"stages": "staging"}, environ=environ, config_file=config)
    assert (got.registry, got.cache_dir) == ("/r", "/c")
    assert got.poll_interval_s == 4.0
    assert got.stages == "staging"


def test_a_pod_shares_one_file_the_sync_skips_the_keys_that_are_serves(tmp_path: Path) -> None:
    config = tmp_path / "pod.yaml"
    config.write_text("registry: /r\ncache_dir: /c\naudit_path: /a.jsonl\ndrain_s: 10\n")
    sync = load_sync_settings({}, environ={"STAGESERVE_CONFIG": str(config)})
    serve = load_settings({}, environ={"STAGESERVE_CONFIG": str(config)})
    assert sync.cache_dir == serve.cache_dir == "/c"
    assert serve.audit_path == "/a.jsonl"


def test_serve_knows_every_sync_key_so_it_refuses_a_typo_in_the_shared_file(
    tmp_path: Path,
) -> None:
    sync_keys = {f.name for f in msgspec.structs.fields(SyncSettings)}
    assert sync_keys <= {f.name for f in msgspec.structs.fields(Settings)}
    config = tmp_path / "pod.yaml"
    config.write_text("pol_interval_s: 5\n")
    with pytest.raises(SettingsError, match="pol_interval_s"):
        load_settings({}, environ={}, config_file=config)


def test_a_value_that_does_not_cast_names_the_key_and_its_source() -> None:
    with pytest.raises(SettingsError) as caught:
        load_sync_settings({}, environ={"STAGESERVE_GC_GRACE_S": "soon"})
    assert caught.value.key == "gc_grace_s"
    assert "STAGESERVE_GC_GRACE_S" in str(caught.value)


def test_the_trust_policy_comes_from_the_file_or_as_json_from_the_environment(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pod.yaml"
    config.write_text("trust_policy:\n  - stages: [prod]\n    allowed_signers: /t/signers\n")
    from_file = load_sync_settings({}, environ={}, config_file=config).trust_policy
    environ = {"STAGESERVE_TRUST_POLICY": '[{"stages": ["prod"], "allowed_signers": "/t/signers"}]'}
    assert load_sync_settings({}, environ=environ).trust_policy == from_file
    assert from_file[0].models == ["*"]
    # serve reads the same file without complaint (one settings file per pod).
    assert load_settings({}, environ={}, config_file=config).trust_policy == from_file
    config.write_text("trust_policy:\n  - stages: [prod]\n    alowed_signers: /t/signers\n")
    with pytest.raises(SettingsError, match="alowed_signers"):
        load_sync_settings({}, environ={}, config_file=config)
