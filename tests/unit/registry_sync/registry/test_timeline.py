"""The registry history the console draws: versions with their authors and packages, and the
bands of time each version was assigned to a stage (the documented rule, rollbacks included)."""

from __future__ import annotations

from pathlib import Path

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.timeline import build_history
from registry_sync.registry.views import parse_time
from tests.registry_packages import init_registry, write_package


def test_bands_follow_assignments_rollbacks_and_unassignments(tmp_path: Path) -> None:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    for version in ("v1.0.0", "v1.1.0"):
        package = write_package(tmp_path / version, payload=version.encode(), labels=("fuel",))
        writer.register(reg, "cost", package, version=version)
    a1 = writer.assign(reg, "cost", "prod", "v1.0.0")
    a2 = writer.assign(reg, "cost", "prod", "v1.1.0")
    a3 = writer.assign(reg, "cost", "prod", "v1.0.0")  # rollback
    dev_assigned = writer.assign(reg, "cost", "dev", "v1.1.0")
    u = writer.unassign(reg, "cost", "dev")

    history = build_history(reg, generated_at="now")
    (model,) = history.models
    assert model.name == "cost" and model.labels == ["fuel"]
    prod = [(b.version, b.start, b.end) for b in model.assigned if b.stage == "prod"]
    assert prod == [
        ("v1.0.0", a1.time, a2.time),
        ("v1.1.0", a2.time, a3.time),
        ("v1.0.0", a3.time, None),
    ]
    dev = [b for b in model.assigned if b.stage == "dev"]
    # An unassignment in the assignment's own second wins the tie (gto's rule): no band then.
    if u[0].time == dev_assigned.time:
        assert dev == []
    else:
        assert [(b.version, b.end) for b in dev] == [("v1.1.0", u[0].time)]
    # Bands never overlap and never go back in time.
    for band in model.assigned:
        assert band.end is None or parse_time(band.start) < parse_time(band.end)
    kinds = [(e.stage, e.kind, e.version) for e in model.events]
    assert [k for k in kinds if k[0] == "prod"] == [
        ("prod", "assignment", "v1.0.0"),
        ("prod", "assignment", "v1.1.0"),
        ("prod", "assignment", "v1.0.0"),
    ]
    assert [k for k in kinds if k[0] == "dev"] == [
        ("dev", "assignment", "v1.1.0"),
        ("dev", "unassignment", "v1.1.0"),
    ]
    versions = {v.version: v for v in model.versions}
    assert versions["v1.0.0"].format == "onnx" and versions["v1.0.0"].author
    assert versions["v1.1.0"].signature["inputs"][0]["name"] == "hp"
    assert versions["v1.0.0"].labels == ["fuel"]


def test_the_stage_and_model_filters_of_the_sync_apply(tmp_path: Path) -> None:
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    for name in ("a", "b"):
        writer.register(reg, name, write_package(tmp_path / name, name), version="v1.0.0")
        writer.assign(reg, name, "prod", "v1.0.0")
        writer.assign(reg, name, "dev", "v1.0.0")
    history = build_history(reg, generated_at="now", stages=["prod"], models=["b"])
    (model,) = history.models
    assert model.name == "b"
    assert {b.stage for b in model.assigned} == {e.stage for e in model.events} == {"prod"}
