"""Shadow settings (file, JSON in the environment, checks) and deterministic sampling."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import SettingsError
from gateway.settings import load_settings
from gateway.shadow.config import in_sample, sample_point, shadow_plans


def test_shadow_is_read_from_json_in_the_environment() -> None:
    settings = load_settings(
        {},
        environ={
            "STAGESERVE_SHADOW": '{"cost": {"prod": "dev", "staging": "dev"}}',
            "STAGESERVE_SHADOW_SAMPLE": "0.5",
            "STAGESERVE_SHADOW_SAMPLE_BY_MODEL": '{"cost": 0.25}',
            "STAGESERVE_SHADOW_QUEUE_MAX": "7",
            "STAGESERVE_SHADOW_TIMEOUT_S": "0.2",
            "STAGESERVE_SHADOW_EXECUTOR": "process",
            "STAGESERVE_SHADOW_PRIORITY": "low",
        },
    )
    assert settings.shadow == {"cost": {"prod": "dev", "staging": "dev"}}
    assert (settings.shadow_sample, settings.shadow_sample_by_model) == (0.5, {"cost": 0.25})
    assert (settings.shadow_queue_max, settings.shadow_timeout_s) == (7, 0.2)
    assert (settings.shadow_executor, settings.shadow_priority) == ("process", "low")


def test_shadow_runs_on_its_thread_at_idle_priority_by_default() -> None:
    settings = load_settings({}, environ={})
    assert (settings.shadow_executor, settings.shadow_priority) == ("thread", "idle")


def test_shadow_is_read_from_the_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("shadow:\n  cost:\n    prod: dev\nshadow_sample: 0.1\n")
    settings = load_settings({}, environ={}, config_file=config)
    assert settings.shadow == {"cost": {"prod": "dev"}}
    assert settings.shadow_sample == 0.1


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"STAGESERVE_SHADOW": "{cost: prod}"}, "shadow"),
        ({"STAGESERVE_SHADOW": '{"cost": "dev"}'}, "shadow"),
        ({"STAGESERVE_SHADOW": '{"cost": {"prod": "prod"}}'}, "shadow.cost.prod"),
        ({"STAGESERVE_SHADOW_SAMPLE": "1.5"}, "shadow_sample"),
        ({"STAGESERVE_SHADOW_SAMPLE_BY_MODEL": '{"cost": 0.5}'}, "shadow_sample_by_model.cost"),
        ({"STAGESERVE_SHADOW_QUEUE_MAX": "0"}, "shadow_queue_max"),
        ({"STAGESERVE_SHADOW_TIMEOUT_S": "0"}, "shadow_timeout_s"),
        ({"STAGESERVE_SHADOW_EXECUTOR": "fork"}, "shadow_executor"),
        ({"STAGESERVE_SHADOW_PRIORITY": "high"}, "shadow_priority"),
    ],
)
def test_a_bad_shadow_setting_is_an_error_naming_the_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({}, environ=environ)
    assert info.value.key == key


def test_plans_take_the_per_model_fraction_over_the_default() -> None:
    plans = shadow_plans(
        {"a": {"prod": "dev"}, "b": {"prod": "staging"}, "c": {}},
        sample=0.5,
        sample_by_model={"b": 0.1},
    )
    assert set(plans) == {"a", "b"}
    assert plans["a"]["prod"].describe() == {"stage": "prod", "shadow_stage": "dev", "sample": 0.5}
    assert plans["b"]["prod"].sample == 0.1


def test_the_sample_point_of_a_request_id_is_fixed_and_uniform_enough() -> None:
    ids = [f"req-{i}" for i in range(4000)]
    points = [sample_point(rid) for rid in ids]
    assert points == [sample_point(rid) for rid in ids]
    assert all(0.0 <= p < 1.0 for p in points)
    for fraction in (0.1, 0.3, 0.5, 0.9):
        share = sum(in_sample(rid, fraction) for rid in ids) / len(ids)
        assert share == pytest.approx(fraction, abs=0.03)
    assert all(in_sample(rid, 1.0) for rid in ids[:50])
    assert not any(in_sample(rid, 0.0) for rid in ids[:50])
