"""Registry credentials never reach the cache a gateway shares, nor any log (real processes).

The registry is served over HTTP with a password (`git http-backend` behind Basic auth) and
given to the sync as `http://bot:<secret>@127.0.0.1:PORT/registry.git`. Before, the mirror
lived in `<cache>/.registry-mirror` with that URL, password included, in its git config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from registry_sync.registry import writer
from registry_sync.registry.git_registry import GitRegistry
from tests.integration.git_http import GitHttpServer
from tests.integration.sync_procs import stageserve
from tests.models import save_sklearn_package
from tests.registry_packages import git, init_registry

pytestmark = pytest.mark.slow

MODEL = "cost_predictor"
# Characters that end a URL's user info early in naive parsers ('@'), and a distinctive text.
SECRET = "p@ss-8f3a1c-never-on-disk"
SECRET_ENCODED = SECRET.replace("@", "%40")


@pytest.fixture
def served(tmp_path: Path) -> GitHttpServer:
    source = GitRegistry(init_registry(tmp_path / "source"))
    writer.register(source, MODEL, save_sklearn_package(tmp_path / "pkg"), version="v1.0.0")
    writer.assign(source, MODEL, "prod", "v1.0.0")
    root = tmp_path / "srv"
    root.mkdir()
    git(tmp_path, "clone", "-q", "--mirror", str(source.path), str(root / "registry.git"))
    return GitHttpServer(root, user="bot", password=SECRET)


def _files_containing(folder: Path, text: str) -> list[Path]:
    needles = (text.encode(), SECRET_ENCODED.encode(), b"8f3a1c-never-on-disk")
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(path)
    return found


def test_a_sync_from_a_url_with_credentials_leaves_no_secret_in_the_cache_or_the_mirror(
    served: GitHttpServer, tmp_path: Path
) -> None:
    cache, mirror = tmp_path / "cache", tmp_path / "mirror"
    with served:
        url = served.url("registry.git", password=SECRET_ENCODED)
        done = stageserve("sync", "--once", "--registry", url, "--cache", str(cache),
                          "--mirror-dir", str(mirror))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{MODEL}#prod -> v1.0.0" in done.stdout
        # A second run fetches into the same mirror (credentials needed again, still not kept).
        again = stageserve("sync", "--once", "--registry", url, "--cache", str(cache),
                           "--mirror-dir", str(mirror))  # fmt: skip
        assert again.returncode == 0, again.stderr
    assert (mirror / "HEAD").is_file()
    assert not (cache / ".registry-mirror").exists()
    assert _files_containing(cache, SECRET) == []
    assert _files_containing(mirror, SECRET) == []
    assert SECRET_ENCODED not in done.stdout + done.stderr + again.stdout + again.stderr
    status = json.loads((cache / "sync-status.json").read_text())
    assert status["registry"] == f"http://bot:***@127.0.0.1:{served.port}/registry.git"


def test_a_wrong_password_is_a_clear_error_that_names_no_secret(
    served: GitHttpServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with served:
        url = served.url("registry.git", password="wrong-8f3a1c-never-on-disk")
        done = stageserve("sync", "--once", "--registry", url, "--cache", str(cache),
                          "--mirror-dir", str(tmp_path / "mirror"))  # fmt: skip
    assert done.returncode == 1
    status = json.loads((cache / "sync-status.json").read_text())
    assert status["result"] == "error" and "unreachable" in status["message"]
    assert "8f3a1c" not in done.stdout + done.stderr + json.dumps(status)
    assert _files_containing(cache, "wrong-8f3a1c") == []


def test_a_mirror_an_older_version_left_in_the_cache_is_removed(
    served: GitHttpServer, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    legacy = cache / ".registry-mirror"
    legacy.mkdir(parents=True)
    (legacy / "config").write_text(f'[remote "origin"]\n\turl = http://bot:{SECRET}@host/r\n')
    with served:
        url = served.url("registry.git", password=SECRET_ENCODED)
        done = stageserve("sync", "--once", "--registry", url, "--cache", str(cache),
                          "--mirror-dir", str(tmp_path / "mirror"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not legacy.exists()
    assert _files_containing(cache, SECRET) == []
    assert os.listdir(cache)
