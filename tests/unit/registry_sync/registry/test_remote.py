"""Remote registries: one local mirror, cloned once and then fetched; writes are pushed."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry_sync.errors import RegistryUnreachableError
from registry_sync.registry.git import redact_url
from registry_sync.registry.git_registry import GitRegistry
from registry_sync.registry.remote import Mirror, default_mirror_dir, is_url
from tests.registry_packages import git, init_registry, write_package


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository standing in for the registry on a git server."""
    source = init_registry(tmp_path / "source")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    return bare


def test_the_second_open_fetches_into_the_same_mirror_instead_of_cloning(
    remote: Path, tmp_path: Path
) -> None:
    url = f"file://{remote}"
    mirror_dir = tmp_path / "cache" / "mirror"
    first = GitRegistry.open(url, mirror_dir=mirror_dir)
    assert first.mirror is not None and first.mirror.last_action == "clone"
    marker = mirror_dir / "stageserve-was-here"
    marker.write_text("a fresh clone would not have this file")
    inode = mirror_dir.stat().st_ino
    second = GitRegistry.open(url, mirror_dir=mirror_dir)
    assert second.mirror is not None and second.mirror.last_action == "fetch"
    assert mirror_dir.stat().st_ino == inode and marker.exists()


def test_a_tag_pushed_to_the_remote_is_seen_after_refresh(remote: Path, tmp_path: Path) -> None:
    reader = GitRegistry.open(f"file://{remote}", mirror_dir=tmp_path / "mirror")
    assert reader.list_models() == []
    writer = GitRegistry(remote)  # someone else writes straight into the server's repository
    writer.register("m", write_package(tmp_path / "pkg"))
    writer.assign("m", "prod", "v0.0.1")
    assert reader.list_models() == []  # not fetched yet
    reader.refresh()
    assert reader.which("m", "prod").version == "v0.0.1"
    git(remote, "tag", "-d", "m#prod#1")
    reader.refresh()  # --prune-tags: a tag deleted upstream goes away here too
    assert reader.resolve_stages() == []


def test_writes_to_a_remote_registry_are_pushed_with_their_commit(
    remote: Path, tmp_path: Path
) -> None:
    reg = GitRegistry.open(f"file://{remote}", mirror_dir=tmp_path / "mirror")
    written = reg.register("m", write_package(tmp_path / "pkg"))
    reg.assign("m", "prod", "v0.0.1")
    assert sorted(git(remote, "tag").split()) == ["m#prod#1", "m@v0.0.1"]
    assert git(remote, "rev-parse", "main").strip() == written.commit
    assert GitRegistry(remote).which("m", "prod").version == "v0.0.1"


def test_an_unreachable_remote_is_reported_and_leaves_no_half_mirror(tmp_path: Path) -> None:
    with pytest.raises(RegistryUnreachableError) as caught:
        GitRegistry.open(f"file://{tmp_path}/gone.git", mirror_dir=tmp_path / "mirror")
    assert "gone.git" in str(caught.value)
    assert not (tmp_path / "mirror").exists()


def test_urls_are_told_from_paths_and_passwords_are_redacted() -> None:
    assert is_url("https://github.com/acme/models.git")
    assert is_url("git@github.com:acme/models.git")
    assert is_url("file:///srv/models.git")
    assert not is_url("models-repo")
    assert redact_url("https://user:token@host/x.git") == "https://user:***@host/x.git"
    assert redact_url("https://token@host/x.git") == "https://***@host/x.git"
    assert redact_url("https://host/x.git") == "https://host/x.git"


def test_the_default_mirror_folder_is_one_per_url_and_holds_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    one = default_mirror_dir("https://u:secret@host/acme/models.git")
    assert one.parent == tmp_path / "stageserve" / "mirrors"
    assert "secret" not in str(one)
    assert one != default_mirror_dir("https://host/acme/other.git")
    assert Mirror("https://host/x.git", one).exists() is False


def test_the_first_clone_reports_its_size_and_duration_and_a_fetch_reports_nothing(
    remote: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, "stageserve.progress")
    url = f"file://{remote}"
    GitRegistry.open(url, mirror_dir=tmp_path / "mirror")
    start, end = caplog.records
    assert start.getMessage() == f"clone {url}: started"
    fields = end.fields  # type: ignore[attr-defined]
    assert fields["event"] == "done" and fields["registry"] == url
    assert fields["bytes"] > 0 and fields["duration_s"] >= 0
    caplog.clear()
    GitRegistry.open(url, mirror_dir=tmp_path / "mirror")  # a fetch: quick, no progress
    assert caplog.records == []


def test_a_password_with_a_raw_at_sign_and_query_tokens_are_redacted() -> None:
    assert redact_url("https://bot:p@ss@host/x.git") == "https://bot:***@host/x.git"
    assert redact_url("https://bot:p?s#s@host/x.git") == "https://bot:***@host/x.git"
    assert (
        redact_url("https://host/x.git?private_token=abc&ref=1")
        == "https://host/x.git?private_token=***&ref=***"
    )
    assert redact_url("https://t@host?token=abc") == "https://***@host?token=***"
    assert redact_url("git@github.com:acme/models.git") == "git@github.com:acme/models.git"


def test_the_mirror_never_stores_the_url_and_keeps_the_callers_git_config(
    remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller's own config through the environment (the Kubernetes manifests set a
    # credential helper this way) stays in force next to the URL we pass the same way.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.name")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "from-the-environment")
    mirror_dir = tmp_path / "mirror"
    reg = GitRegistry.open(f"file://{remote}", mirror_dir=mirror_dir)
    reg.refresh()
    config = (mirror_dir / "config").read_text()
    assert "url" not in config and str(remote) not in config
    assert not (mirror_dir / "FETCH_HEAD").exists()
    assert reg.git.head() is not None  # HEAD follows the remote's default branch


def test_a_mirror_made_with_the_url_in_its_config_loses_it_at_the_next_fetch(
    remote: Path, tmp_path: Path
) -> None:
    mirror_dir = tmp_path / "mirror"
    git(tmp_path, "clone", "-q", "--mirror", f"file://{remote}", str(mirror_dir))
    assert "url = " in (mirror_dir / "config").read_text()
    GitRegistry.open(f"file://{remote}", mirror_dir=mirror_dir)
    assert "url = " not in (mirror_dir / "config").read_text()
