"""artifacts.yaml edits keep what people and gto wrote: comments, order, quoting, fields."""

from __future__ import annotations

import pytest
import yaml

from registry_sync.errors import ManifestError
from registry_sync.registry.artifacts_file import register_entry, remove_entry

WRITTEN = b"""\
# Models of the fleet team; edited by hand and by `gto annotate`.
zeta:
  type: model
  path: models/zeta
  description: "Zeta, kept first"   # why it exists
  labels: [legacy]
cost_predictor:
  type: model
  path: models/cost_predictor
  virtual: false
  description: Hand-written description
  labels:
  - regression
  custom:
    owner_team: fleet
    dashboard: https://grafana.example/d/cost
"""


def test_registering_merges_the_entry_and_keeps_everything_else() -> None:
    out = register_entry(
        WRITTEN,
        "cost_predictor",
        path="models/cost_predictor",
        description="",
        labels=["mtcars", "regression"],
    ).decode()
    assert out.startswith("# Models of the fleet team; edited by hand and by `gto annotate`.\n")
    assert '  description: "Zeta, kept first"   # why it exists\n' in out
    data = yaml.safe_load(out)
    assert list(data) == ["zeta", "cost_predictor"]
    entry = data["cost_predictor"]
    assert entry["description"] == "Hand-written description"  # the package had none
    assert entry["labels"] == ["regression", "mtcars"]
    assert entry["custom"] == {"owner_team": "fleet", "dashboard": "https://grafana.example/d/cost"}


def test_a_package_description_replaces_the_entrys_and_new_models_go_last() -> None:
    out = register_entry(WRITTEN, "zeta", path="models/zeta", description="Zeta v2", labels=[])
    assert yaml.safe_load(out)["zeta"]["description"] == "Zeta v2"
    out = register_entry(WRITTEN, "new", path="models/new", description="d", labels=["b", "a"])
    data = yaml.safe_load(out)
    assert list(data) == ["zeta", "cost_predictor", "new"]
    assert data["new"] == {
        "type": "model",
        "path": "models/new",
        "virtual": False,
        "description": "d",
        "labels": ["a", "b"],
    }
    assert register_entry(None, "m", path="models/m", description="", labels=[]).startswith(b"m:")


def test_removing_an_entry_keeps_the_rest_as_written() -> None:
    out = remove_entry(WRITTEN, "zeta").decode()
    assert "zeta" not in out
    assert out.startswith("# Models of the fleet team")
    assert "dashboard: https://grafana.example/d/cost" in out


def test_a_file_that_is_no_mapping_is_refused_naming_it() -> None:
    with pytest.raises(ManifestError, match="not a mapping"):
        register_entry(b"- a\n- b\n", "m", path="models/m", description="", labels=[])
