from __future__ import annotations

import pytest

from registry_sync.errors import SettingsError
from registry_sync.mlflow.rest import ModelVersion, RegisteredModel, RegisteredModelAlias
from registry_sync.mlflow.stage_map import StageMap


def _model(**aliases: str) -> RegisteredModel:
    return RegisteredModel(
        name="m", aliases=[RegisteredModelAlias(alias=a, version=v) for a, v in aliases.items()]
    )


def _versions(*specs: tuple[str, str, str]) -> list[ModelVersion]:
    return [ModelVersion(name="m", version=v, current_stage=s, status=st) for v, s, st in specs]


def test_default_maps_each_alias_to_its_name_and_legacy_stages_to_prod_and_staging() -> None:
    versions = _versions(
        ("1", "Production", "READY"), ("2", "Staging", "READY"), ("3", "None", "READY")
    )
    found = StageMap().assignments(_model(dev="3"), versions)
    assert [(a.stage, a.version, a.via) for a in found] == [
        ("dev", "3", "@dev"),
        ("prod", "1", "Production"),
        ("staging", "2", "Staging"),
    ]


def test_an_alias_beats_a_legacy_stage_feeding_the_same_stage() -> None:
    versions = _versions(("1", "Production", "READY"), ("2", "None", "READY"))
    (found,) = StageMap().assignments(_model(prod="2"), versions)
    assert (found.stage, found.version, found.via) == ("prod", "2", "@prod")


def test_a_version_not_ready_is_never_assigned() -> None:
    versions = _versions(
        ("1", "Production", "PENDING_REGISTRATION"), ("2", "None", "FAILED_REGISTRATION")
    )
    assert StageMap().assignments(_model(prod="2"), versions) == []


def test_a_configured_mapping_follows_only_what_it_names_in_its_order() -> None:
    stage_map = StageMap.from_setting(
        {"@champion": "prod", "Production": "prod", "@challenger": "staging"}
    )
    versions = _versions(
        ("1", "Production", "READY"), ("2", "None", "READY"), ("3", "None", "READY")
    )
    found = stage_map.assignments(_model(challenger="3", dev="2"), versions)
    assert [(a.stage, a.version) for a in found] == [("prod", "1"), ("staging", "3")]
    found = stage_map.assignments(_model(champion="2"), versions)
    assert [(a.stage, a.version) for a in found] == [("prod", "2")]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"Archived": "prod"}, "neither an alias"),
        ({"@x": "bad stage!"}, "invalid stage"),
        ({"@": "prod"}, "empty alias"),
    ],
)
def test_a_bad_mapping_is_a_settings_error_naming_it(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        StageMap.from_setting(mapping)
