"""Packages the registry points to: a linked research repository (over file://) and large
files in object stores (a local HTTP server, moto's S3 server, file://), all real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from registry_sync.errors import LinkError
from registry_sync.package.read import read_package, write_manifest
from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.link import link
from registry_sync.runtimes import LoadedModel
from registry_sync.sync.setup import build_sync
from tests.integration.load import LoadStream
from tests.integration.server import ROOT, ServerProcess, wait_until
from tests.integration.stores import S3_ENV, http_server, s3_server
from tests.models import example_rows, save_sklearn_package
from tests.registry_packages import git, init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
ROW = example_rows(1)[0]


@pytest.fixture(autouse=True)
def _own_mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mirrors of linked repositories go under $XDG_CACHE_HOME: keep them per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _research_repo(path: Path) -> Path:
    """The research repository: a package in models/linear, committed and tagged v1."""
    init_registry(path)
    save_sklearn_package(path / "models" / "linear")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "linear regression")
    git(path, "tag", "-a", "v1", "-m", "v1")
    return path


def _predict(package_path: str) -> float:
    return float(LoadedModel.from_path(package_path).predict([ROW])[0])


def _stageserve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_a_linked_package_keeps_only_model_yaml_in_the_registry_and_serves(tmp_path: Path) -> None:
    research = _research_repo(tmp_path / "research")
    registry = init_registry(tmp_path / "registry")
    done = _stageserve(
        "registry", "link", MODEL, "--source", research.as_uri(), "--rev", "v1",
        "--path", "models/linear", "--registry", str(registry),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = git(registry, "ls-tree", "-r", "--name-only", f"{MODEL}@v0.0.1").split()
    assert f"models/{MODEL}/model.yaml" in listed
    assert not any(name.endswith(".pkl") for name in listed)
    manifest = yaml_of(git(registry, "show", f"{MODEL}@v0.0.1:models/{MODEL}/model.yaml"))
    assert manifest["source"] == {
        "git": research.as_uri(),
        "rev": "v1",
        "commit": git(research, "rev-parse", "v1^{commit}").strip(),
        "path": "models/linear",
    }
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"])
    writer.assign(GitRegistry(registry), MODEL, "prod", "v0.0.1")
    state = build_sync(str(registry), tmp_path / "cache").run_once()
    (entry,) = state.entries
    expected = _predict(str(research / "models" / "linear"))
    # The same pickle bytes (digests checked) loaded the same way: the same number.
    assert _predict(entry.package_path) == expected
    assert _stageserve("registry", "check", "--registry", str(registry)).returncode == 0


def yaml_of(text: str) -> dict[str, object]:
    import yaml

    found: dict[str, object] = yaml.safe_load(text)
    return found


def test_a_bare_commit_or_a_missing_tag_is_refused(tmp_path: Path) -> None:
    research = _research_repo(tmp_path / "research")
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    sha = git(research, "rev-parse", "HEAD").strip()
    with pytest.raises(LinkError, match="bare commit"):
        link(reg, MODEL, research.as_uri(), sha[:12], path="models/linear")
    with pytest.raises(LinkError, match="no such tag"):
        link(reg, MODEL, research.as_uri(), "v9", path="models/linear")
    assert reg.view().state == {}


def test_a_moved_tag_fails_check_and_its_new_files_are_never_loaded(tmp_path: Path) -> None:
    research = _research_repo(tmp_path / "research")
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    link(reg, MODEL, research.as_uri(), "v1", path="models/linear")
    writer.assign(reg, MODEL, "prod", "v0.0.1")
    original = _predict(str(research / "models" / "linear"))
    # Someone retrains in place, rewrites the commit and moves the tag to it.
    shutil.rmtree(research / "models" / "linear")
    save_sklearn_package(research / "models" / "linear", offset=100.0)
    git(research, "commit", "-q", "-a", "--amend", "-m", "retrained")
    git(research, "tag", "-f", "-a", "v1", "-m", "v1 again")
    check = _stageserve("registry", "check", "--registry", str(reg.path))
    assert check.returncode == 1 and "moved" in check.stdout, check.stdout + check.stderr
    # A sync whose mirror still has the recorded commit serves exactly it...
    state = build_sync(str(reg.path), tmp_path / "cache").run_once()
    assert _predict(state.entries[0].package_path) == original
    # ...and one that cannot find it any more (a fresh clone: the old commit is unreachable)
    # reports it and loads nothing.
    git(research, "reflog", "expire", "--expire=now", "--all")
    git(research, "gc", "-q", "--prune=now")
    (tmp_path / "xdg").rename(tmp_path / "xdg-old")
    fresh = build_sync(str(reg.path), tmp_path / "cache2").run_once()
    assert fresh.entries == []
    (error,) = fresh.errors
    assert "is not in it" in error.message


def _model_file(folder: Path) -> str:
    """The package's model file (model.skops, or model.pkl for an older save)."""
    return read_package(folder).manifest.files[0].path


def _uri_package(folder: Path, offset: float, uri: str) -> Path:
    """A sklearn package whose model file lives at `uri` (still in the folder, for now)."""
    save_sklearn_package(folder, offset=offset)
    package = read_package(folder)
    model_file = _model_file(folder)
    files = [
        msgspec.structs.replace(entry, uri=uri) if entry.path == model_file else entry
        for entry in package.manifest.files
    ]
    write_manifest(msgspec.structs.replace(package.manifest, files=files), folder)
    return folder


def test_files_in_an_http_store_and_s3_are_fetched_verified_and_a_tampered_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    reg = GitRegistry(init_registry(tmp_path / "registry"))
    store = tmp_path / "store"
    store.mkdir()
    with http_server(store) as http_url, s3_server(tmp_path) as s3_url:
        for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_url}.items():
            monkeypatch.setenv(key, value)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        # v0.0.1: the model file over HTTP; v0.0.2 (offset 100): over S3; v0.0.3: file://.
        uris = {
            "v0.0.1": f"{http_url}/a/model.bin",
            "v0.0.2": "s3://models/b/model.bin",
            "v0.0.3": (store / "c" / "model.bin").as_uri(),
        }
        expected = {}
        for index, (version, uri) in enumerate(uris.items()):
            folder = _uri_package(tmp_path / version, 100.0 * index, uri)
            expected[version] = _predict_local(folder)
            model_file = _model_file(folder)
            data = (folder / model_file).read_bytes()
            if uri.startswith("s3://"):
                s3.put_object(Bucket="models", Key="b/model.bin", Body=data)
            else:
                (store / uri.split("/")[-2]).mkdir()
                (store / uri.split("/")[-2] / "model.bin").write_bytes(data)
            (folder / model_file).unlink()  # registered from a folder without it
            writer.register(reg, MODEL, folder, version=version)
            tree = git(reg.path, "ls-tree", "-r", "--name-only", f"{MODEL}@{version}")
            assert model_file not in tree
        for stage, version in zip(("a", "b", "c"), uris, strict=True):
            writer.assign(reg, MODEL, stage, version)
        state = build_sync(str(reg.path), tmp_path / "cache").run_once()
        assert not state.errors
        for entry in state.entries:
            assert _predict(entry.package_path) == expected[entry.version]
        # The objects change behind the registry's back: nothing changed is ever loaded.
        (store / "a" / "model.bin").write_bytes(b"not the model")
        s3.put_object(Bucket="models", Key="b/model.bin", Body=b"not the model either")
        again = build_sync(str(reg.path), tmp_path / "cache-2").run_once()
    assert {(e.version, "sha256" in e.message or "bytes" in e.message) for e in again.errors} == {
        ("v0.0.1", True),
        ("v0.0.2", True),
    }
    assert [e.version for e in again.entries] == ["v0.0.3"]
    assert "stageserve-test-secret" not in json.dumps(msgspec.to_builtins(again))


def _predict_local(folder: Path) -> float:
    return _predict(str(folder))


def test_linked_and_uri_versions_swap_under_load_like_in_repo_ones(tmp_path: Path) -> None:
    research = _research_repo(tmp_path / "research")
    reg = GitRegistry(init_registry(tmp_path / "registry"))
    link(reg, MODEL, research.as_uri(), "v1", path="models/linear")
    blob = tmp_path / "blob.bin"
    folder = _uri_package(tmp_path / "b", 100.0, blob.as_uri())
    model_file = _model_file(folder)
    shutil.copy(folder / model_file, blob)
    expected = {
        "v0.0.1": _predict(str(research / "models" / "linear")),
        "v0.0.2": _predict(str(folder)),
    }
    (folder / model_file).unlink()
    writer.register(reg, MODEL, folder, version="v0.0.2")
    writer.assign(reg, MODEL, "prod", "v0.0.1")
    cache = tmp_path / "cache"
    cache.mkdir()
    args = ["--registry", str(reg.path), "--poll-interval-s", "0.5"]
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    with ServerProcess(cache, args=args, env=env) as server:
        wait_until(lambda: server.get("/readyz").status == 200, 60, "readiness")
        with LoadStream(server.port, f"/predict/{MODEL}", {"inputs": [ROW]}, clients=3) as load:
            for version in ("v0.0.2", "v0.0.1"):
                moved = time.monotonic()
                writer.assign(reg, MODEL, "prod", version)
                wait_until(
                    lambda v=version, t=moved: any(a.version == v for a in load.answered_since(t)),
                    30,
                    f"prod to serve {version}",
                )
            answers = load.stop()
    failed = [a for a in answers if a.status != 200]
    assert answers and not failed, failed[:1]
    for answer in answers:
        assert answer.body is not None
        assert answer.body["predictions"][0] == pytest.approx(expected[answer.version], rel=1e-9)
    assert {a.version for a in answers} == {"v0.0.1", "v0.0.2"}
