"""Settings: flags beat STAGESERVE_* env, which beats the file, which beats defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import SettingsError
from gateway.settings import Settings, load_settings


def test_defaults_when_nothing_is_given() -> None:
    assert load_settings({}, environ={}) == Settings()
    assert Settings().host == "127.0.0.1"
    assert Settings().default_stage == "prod"


def test_flags_beat_env_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "stageserve.yaml"
    config.write_text("port: 9000\nmax_rows: 7\ndefault_stage: staging\naudit_stdout: true\n")
    environ = {"STAGESERVE_PORT": "9100", "STAGESERVE_MAX_ROWS": "8"}
    settings = load_settings({"port": 9200, "host": None}, environ=environ, config_file=config)
    assert settings.port == 9200
    assert settings.max_rows == 8
    assert settings.default_stage == "staging"
    assert settings.audit_stdout is True


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("max_body_bytes: 1234\n")
    settings = load_settings({}, environ={"STAGESERVE_CONFIG": str(config)})
    assert settings.max_body_bytes == 1234


def test_a_value_that_does_not_cast_names_the_key_and_source() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({}, environ={"STAGESERVE_MAX_ROWS": "lots"})
    assert info.value.key == "max_rows"
    assert "STAGESERVE_MAX_ROWS" in str(info.value)


def test_an_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("max_row: 5\n")
    with pytest.raises(SettingsError, match="max_row"):
        load_settings({}, environ={}, config_file=config)


def test_a_limit_below_one_is_an_error() -> None:
    with pytest.raises(SettingsError, match="max_rows"):
        load_settings({"max_rows": 0}, environ={})
