"""MlflowRegistry over a fake client (one class, no sockets): what a hostile or odd MLmodel
does to the sync. The real server is in tests/integration/test_mlflow_source.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from registry_sync.errors import PackageError, UnsupportedFlavorError
from registry_sync.mlflow.location import MlflowLocation
from registry_sync.mlflow.rest import ArtifactFile, ModelVersion, RegisteredModel
from registry_sync.mlflow.source import MlflowRegistry

SIGNATURE = {"inputs": '[{"type": "double", "name": "x"}]', "outputs": '[{"type": "double"}]'}


class FakeClient:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def registered_models(self) -> list[RegisteredModel]:
        return [RegisteredModel(name="m")]

    def model_versions(self, name: str) -> list[ModelVersion]:
        return [ModelVersion(name=name, version="1", source="models:/m-1")]

    def download_uri(self, name: str, version: str) -> str:
        return "mlflow-artifacts:/0/models/m-1/artifacts"

    def list_artifacts(self, path: str) -> list[ArtifactFile]:
        return [ArtifactFile(path=f"{path}/{n}", file_size=len(b)) for n, b in self.files.items()]

    def download(self, path: str, dest: Path, *, expected_size: int | None = None) -> int:
        data = self.files[path.rsplit("/", 1)[-1]]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return len(data)


def _registry(tmp_path: Path, files: dict[str, bytes]) -> MlflowRegistry:
    location = MlflowLocation.parse("mlflow+http://127.0.0.1:5000", {})
    return MlflowRegistry(location, tmp_path / "state", client=FakeClient(files))  # type: ignore[arg-type]


def _mlmodel(flavors: Any) -> bytes:
    import yaml

    return yaml.safe_dump({"flavors": flavors, "signature": SIGNATURE}).encode()


def test_an_mlmodel_of_an_unexpected_shape_is_that_versions_error(tmp_path: Path) -> None:
    odd = _mlmodel({"sklearn": {"pickled_model": "model.pkl"}, "python_function": "not a map"})
    registry = _registry(tmp_path, {"MLmodel": odd, "model.pkl": b"x"})
    with pytest.raises(PackageError, match="m version 1: cannot read it: AttributeError"):
        registry.export_package("m", "1", tmp_path / "out")


def test_a_flavor_it_cannot_serve_names_the_flavors(tmp_path: Path) -> None:
    registry = _registry(tmp_path, {"MLmodel": _mlmodel({"python_function": {}})})
    with pytest.raises(UnsupportedFlavorError, match="python_function"):
        registry.export_package("m", "1", tmp_path / "out")


def test_a_version_whose_files_change_is_refused_after_the_first_download(tmp_path: Path) -> None:
    files = {"MLmodel": _mlmodel({"sklearn": {"pickled_model": "model.pkl"}}), "model.pkl": b"a"}
    registry = _registry(tmp_path, files)
    registry.export_package("m", "1", tmp_path / "first")
    files["model.pkl"] = b"b"
    with pytest.raises(PackageError, match=r"'model\.pkl' changed since it was first downloaded"):
        _registry(tmp_path, files).export_package("m", "1", tmp_path / "second")


def test_a_stage_whose_alias_disappears_keeps_its_last_version(tmp_path: Path) -> None:
    registry = _registry(tmp_path, {})
    aliased = [_with_alias("prod", "1")]
    registry.client.registered_models = lambda: aliased  # type: ignore[method-assign]
    (first,) = registry.resolve_stages()
    bare = [RegisteredModel(name="m")]
    registry.client.registered_models = lambda: bare  # type: ignore[method-assign]
    (kept,) = registry.resolve_stages()
    assert (kept.stage, kept.version) == (first.stage, first.version) == ("prod", "1")
    events = [(e.event, e.version) for e in registry.history.load().events]
    assert events == [("assignment", "1"), ("unassignment", "1")]


def _with_alias(alias: str, version: str) -> RegisteredModel:
    from registry_sync.mlflow.rest import RegisteredModelAlias

    return RegisteredModel(name="m", aliases=[RegisteredModelAlias(alias=alias, version=version)])
