"""Packages the registry points to instead of copying: linked git repositories and file URIs.

`link` registers a version whose files stay in another git repository at a tag (the
registry's model.yaml records the repository, the tag, the commit it resolved to and every
file's sha256). `complete_package` puts the missing files of an exported package in place:
from the linked repository at the recorded commit, and from each file's `uri`; the caller
then verifies every digest (`read_package`), so a moved tag or a changed object is never
loaded. `check_links` is `registry check`'s part: does each tag still name its commit?
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import msgspec
import yaml

from registry_sync.errors import GitCommandError, LinkError, ManifestError, RegistryError
from registry_sync.package.manifest import LinkedSource, Manifest
from registry_sync.package.read import MANIFEST_FILE, read_package, write_manifest
from registry_sync.package.uri_fetch import fetch_uri
from registry_sync.registry.git import redact_url
from registry_sync.registry.remote import Mirror, default_mirror_dir, is_url
from registry_sync.registry.repository import RegistryRepo
from registry_sync.registry.views import TagWritten

__all__ = ["check_links", "complete_package", "link", "resolve_tag"]

# A bare (possibly abbreviated) commit id: a link names a tag, as the seed article advises.
_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,40}$")


def link(
    reg: RegistryRepo,
    name: str,
    source: str,
    rev: str,
    *,
    path: str = "",
    version: str | None = None,
    bump: str = "patch",
) -> TagWritten:
    """Register a version of `name` whose package is `path` in the repository `source` at
    the tag `rev`; only model.yaml (with the source, commit and digests) enters the registry."""
    from registry_sync.registry import writer

    if redact_url(source) != source:
        raise LinkError(source, rev, "credentials in the URL would be written to the registry")
    commit, mirror = resolve_tag(source, rev)
    with tempfile.TemporaryDirectory(prefix="stageserve-link-") as tmp:
        files = Path(tmp) / "files"
        files.mkdir()
        try:
            mirror.git.export(commit, path.strip("/") or ".", files)
        except GitCommandError as exc:
            raise LinkError(
                source, rev, f"cannot read {path or 'the root'}: {exc.reason}"
            ) from None
        package = read_package(files)  # a stageserve package: model.yaml and verified files
        linked = msgspec.structs.replace(
            package.manifest,
            source=LinkedSource(git=source, rev=rev, commit=commit, path=path.strip("/")),
        )
        only_manifest = Path(tmp) / "package"
        only_manifest.mkdir()
        write_manifest(linked, only_manifest)
        return writer.register(reg, name, only_manifest, version=version, bump=bump)  # type: ignore[arg-type]


def resolve_tag(source: str, rev: str) -> tuple[str, Mirror]:
    """The commit the tag `rev` names in `source` now (its mirror fetched first)."""
    if _SHA_RE.match(rev):
        raise LinkError(source, rev, "a bare commit id: link a tag (e.g. v1), not a commit")
    mirror = _mirror(source)
    mirror.update()
    found = mirror.git.run(
        "rev-parse", "--verify", "-q", f"refs/tags/{rev}^{{commit}}", ok_codes=(0, 1)
    ).strip()
    if not found:
        raise LinkError(source, rev, "no such tag in the source repository")
    return found, mirror


def complete_package(dest: Path) -> None:
    """Fetch what an exported package lacks: linked files, then files with a `uri`."""
    raw = dest / MANIFEST_FILE
    if not raw.is_file():
        return
    try:
        manifest = msgspec.convert(yaml.safe_load(raw.read_bytes()), type=Manifest)
    except (yaml.YAMLError, msgspec.ValidationError):
        return  # read_package reports it, naming the field
    if manifest.source is not None:
        _export_linked(manifest, dest)
    for entry in manifest.files:
        if entry.uri is not None and not (dest / entry.path).is_file():
            fetch_uri(
                entry.uri, dest / entry.path, sha256=entry.sha256, size_bytes=entry.size_bytes
            )


def check_links(reg: RegistryRepo, model: str, commit: str) -> list[str]:
    """Problems with the link of the version at `commit`: its tag moved or vanished."""
    try:
        manifest = reg.manifest_at(model, commit)
    except ManifestError:
        return []  # reported by the package check
    source = manifest.source
    if source is None:
        return []
    try:
        now, _ = resolve_tag(source.git, source.rev)
    except RegistryError as exc:
        return [f"linked source: {exc}"]
    if now != source.commit:
        return [
            f"linked tag {source.rev} of {redact_url(source.git)} moved: it names {now[:12]}, "
            f"model.yaml records {source.commit[:12]}"
        ]
    return []


def _export_linked(manifest: Manifest, dest: Path) -> None:
    source = manifest.source
    assert source is not None
    mirror = _mirror(source.git)
    git = mirror.git
    if not mirror.exists() or not _has_commit(mirror, source.commit):
        mirror.update()
    if not _has_commit(mirror, source.commit):
        raise LinkError(source.git, source.rev, f"commit {source.commit[:12]} is not in it")
    wanted = {entry.path for entry in manifest.files if entry.uri is None}
    with tempfile.TemporaryDirectory(prefix=".linked-", dir=dest) as tmp:
        git.export(source.commit, source.path or ".", Path(tmp))
        for relative in sorted(wanted):
            found = Path(tmp) / relative
            if found.is_file():
                (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(found, dest / relative)


def _has_commit(mirror: Mirror, commit: str) -> bool:
    if not mirror.exists():
        return False
    out = mirror.git.run("cat-file", "-t", commit, ok_codes=(0, 1, 128)).strip()
    return out == "commit"


def _mirror(source: str) -> Mirror:
    url = source if is_url(source) else Path(source).resolve().as_uri()
    return Mirror(url, default_mirror_dir(url))
