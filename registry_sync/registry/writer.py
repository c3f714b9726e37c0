"""Registry writes: register, assign, unassign, deregister, deprecate, as gto would tag them.

Each write checks everything first and changes nothing when it refuses. An assignment is dated
after every earlier event of its stage, and a deprecation after every event of its model
(a second later than the clock if need be), so on a registry stageserve writes no one-second
tie decides anything and `gto show` agrees with the newest `#N`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from registry_sync.errors import (
    IncompatibleSignatureError,
    ManifestError,
    ModelNotFoundError,
    NoVersionInStageError,
    RegistryError,
    StageNotAllowedError,
    VersionExistsError,
    VersionNotFoundError,
)
from registry_sync.progress import progress
from registry_sync.registry.artifacts_file import register_entry, remove_entry
from registry_sync.registry.events import ArtifactState
from registry_sync.registry.git import Signing
from registry_sync.registry.gto_tags import (
    TagKind,
    bump_version,
    check_name,
    check_servable_name,
    check_version,
    format_tag,
    next_counter,
    tag_message,
    version_key,
)
from registry_sync.registry.publish import current_branch, newest_event_time, publish_tag
from registry_sync.registry.repository import ARTIFACTS_FILE, RegistryRepo
from registry_sync.registry.views import TagWritten

__all__ = ["assign", "deprecate", "deregister", "register", "unassign"]

Bump = Literal["major", "minor", "patch"]


def register(
    reg: RegistryRepo,
    name: str,
    package_path: Path | str,
    version: str | None = None,
    bump: Bump = "patch",
    *,
    sign: Signing | None = None,
) -> TagWritten:
    """Commit the package under models/NAME, record it in artifacts.yaml, tag NAME@vX.Y.Z
    (signed with `sign`)."""
    from registry_sync.package.read import MANIFEST_FILE, read_package

    check_servable_name(check_name(name))
    if version is not None:
        check_version(version)
    # Resolved here, against the caller's working directory: git runs in the registry. Files
    # that live elsewhere (a uri, a linked repository) may be absent; they never enter git.
    package_path = Path(package_path).absolute()
    listed = read_package(package_path, verify_digests=False, remote_ok=True)
    size = sum(f.size_bytes for f in listed.manifest.files)
    with progress(f"verify {name} package", size, model=name) as advance:
        package = read_package(package_path, on_bytes=advance, remote_ok=True)
    for label in package.manifest.labels:
        try:
            check_name(label, "label")
        except RegistryError as exc:
            raise ManifestError(str(package.path), f"labels: {exc}") from None
    reg.refresh()
    view = reg.view()
    art = view.state.get(name)
    # A deregistered version keeps its tag, so its number is taken too (gto agrees: it refuses).
    taken = [v.version for v in art.registered_versions()] if art else []
    if version is None:
        version = bump_version(max(taken, key=version_key) if taken else None, bump)
    if version in taken or format_tag(TagKind.REGISTER, name, version=version) in {
        t.name for t in view.tags
    }:
        raise VersionExistsError(name, version)
    branch = current_branch(reg)
    parent = view.head
    target_dir = f"{reg.models_dir}/{name}"
    files = {f"{target_dir}/{MANIFEST_FILE}": package.path / MANIFEST_FILE}
    for entry in package.manifest.files:
        if entry.uri is None and package.manifest.source is None:
            files[f"{target_dir}/{entry.path}"] = package.file_path(entry.path)
    artifacts = register_entry(
        reg.git.read_file(parent, ARTIFACTS_FILE) if parent else None,
        name,
        path=target_dir,
        description=package.manifest.card.description,
        labels=package.manifest.labels,
        where=f"{reg.display_location}:{ARTIFACTS_FILE}",
    )
    with progress(
        f"write {name} {version} to the registry", size, model=name, version=version
    ) as advance:
        commit = reg.git.write_commit(
            parent,
            replace_dir=target_dir,
            files=files,
            blobs={ARTIFACTS_FILE: artifacts},
            message=f"Register {name} {version}",
        )
        reg.git.update_branch(branch, commit, parent)
        tag = format_tag(TagKind.REGISTER, name, version=version)
        message = tag_message(TagKind.REGISTER, name, version=version)
        written = publish_tag(
            reg,
            name=name,
            tag=tag,
            commit=commit,
            message=message,
            branch=branch,
            old=parent,
            paths=[target_dir, ARTIFACTS_FILE],
            version=version,
            # Not before a deprecation it is meant to lift (a tie goes to the registration).
            after=_last_deprecation(art) - 1,
            sign=sign,
        )
        advance(size)
    return written


def assign(
    reg: RegistryRepo,
    name: str,
    stage: str,
    version: str,
    force: bool = False,
    *,
    sign: Signing | None = None,
) -> TagWritten:
    """Tag NAME#STAGE#N on the version's commit (signed with `sign`: what a protected stage
    of a trust policy needs); refuse a version that breaks the stage's clients (inputs
    removed, added as required or retyped) unless `force`."""
    from registry_sync.package.signature import breaking_changes

    check_name(name)
    check_name(stage, "stage")
    check_version(version)
    _check_stage(reg, stage)
    reg.refresh()
    view = reg.view()
    art = view.artifact(name)
    target = art.find(version)
    if target is None or not target.is_active:
        active = [v.version for v in art.registered_versions() if v.is_active]
        raise VersionNotFoundError(name, version, active)
    current = art.resolve(stage)
    if not force:
        new = reg.manifest_at(name, target.commit)
        if current is not None and current is not target:
            try:
                old = reg.manifest_at(name, current.commit)
            except ManifestError:
                old = None  # nothing to compare with (e.g. an artifact gto registered)
            problems = breaking_changes(old.signature, new.signature) if old else []
            if problems:
                raise IncompatibleSignatureError(name, stage, version, problems)
    counter = next_counter(name, (t.name for t in view.tags))
    tag = format_tag(TagKind.ASSIGN, name, stage=stage, counter=counter)
    message = tag_message(TagKind.ASSIGN, name, stage=stage, version=version)
    return publish_tag(
        reg,
        name=name,
        tag=tag,
        commit=target.commit,
        message=message,
        version=version,
        stage=stage,
        # After every event of this stage (a tie would let gto pick by registration order),
        # and not before a deprecation it lifts.
        after=max(newest_event_time(art, stage), _last_deprecation(art) - 1),
        sign=sign,
    )


def unassign(
    reg: RegistryRepo,
    name: str,
    stage: str,
    version: str | None = None,
    *,
    sign: Signing | None = None,
) -> list[TagWritten]:
    """Tag NAME#STAGE!#N so the stage serves nothing (or only drop `version` from it).

    gto keeps a version in a stage until that version is unassigned, so emptying a stage
    unassigns every version still in it; otherwise an older one would take over.
    """
    check_name(name)
    check_name(stage, "stage")
    reg.refresh()
    view = reg.view()
    art = view.artifact(name)
    in_stage = [v for v in art.versions if v.is_active and v.in_stage(stage)]
    if version is not None:
        in_stage = [v for v in in_stage if v.version == version]
    if not in_stage:
        raise NoVersionInStageError(name, stage)
    written: list[TagWritten] = []
    tags = [t.name for t in view.tags]
    for state in in_stage:
        counter = next_counter(name, tags)
        tag = format_tag(TagKind.UNASSIGN, name, stage=stage, counter=counter)
        tags.append(tag)
        message = tag_message(TagKind.UNASSIGN, name, stage=stage, version=state.version)
        done = publish_tag(
            reg,
            name=name,
            tag=tag,
            commit=state.commit,
            message=message,
            version=state.version,
            stage=stage,
            # Not before the assignment it cancels (in the same second it wins in gto).
            after=newest_event_time(art, stage) - 1,
            sign=sign,
        )
        written.append(done)
    return written


def deregister(
    reg: RegistryRepo, name: str, version: str, *, sign: Signing | None = None
) -> TagWritten:
    """Tag NAME@vX.Y.Z! : the version serves no stage any more (signed with `sign`: what a
    trust policy needs when the version serves a protected stage)."""
    check_name(name)
    check_version(version)
    reg.refresh()
    view = reg.view()
    art = view.artifact(name)
    target = art.find(version)
    if target is None or not target.is_active:
        active = [v.version for v in art.registered_versions() if v.is_active]
        raise VersionNotFoundError(name, version, active)
    tag = format_tag(TagKind.DEREGISTER, name, version=version)
    if tag in {t.name for t in view.tags}:
        tag = format_tag(
            TagKind.DEREGISTER,
            name,
            version=version,
            counter=next_counter(name, (t.name for t in view.tags)),
        )
    message = tag_message(TagKind.DEREGISTER, name, version=version)
    return publish_tag(
        reg, name=name, tag=tag, commit=target.commit, message=message, version=version, sign=sign
    )


def deprecate(reg: RegistryRepo, name: str, *, sign: Signing | None = None) -> TagWritten | None:
    """Tag NAME@deprecated (None when it already is; signed with `sign`: what a trust policy
    needs when the model serves a protected stage). The model's entry leaves artifacts.yaml
    (the rest of the file stays as written): gto 1.10 counts any later commit that still lists
    it as activity that revives the model, so a kept entry would be undone by the next
    unrelated registry write. The entry stays in git history."""

    check_name(name)
    reg.refresh()
    view = reg.view()
    art = view.artifact(name)
    if art.deprecated:
        return None
    names = {t.name for t in view.tags}
    tag = format_tag(TagKind.DEPRECATE, name)
    if tag in names:
        tag = format_tag(TagKind.DEPRECATE, name, counter=next_counter(name, names))
    message = tag_message(TagKind.DEPRECATE, name)
    events = [e for v in art.versions for e in v.all_events()]
    target = max(events, key=lambda e: e.time).commit if events else view.head
    if target is None:
        raise ModelNotFoundError(name, sorted(view.state))
    # A deprecation tied with any other event of the model does not count for gto.
    after = newest_event_time(art)
    if name not in view.artifacts:
        return publish_tag(
            reg, name=name, tag=tag, commit=target, message=message, after=after, sign=sign
        )
    branch = current_branch(reg)
    assert view.head is not None  # the model is listed in artifacts.yaml at HEAD
    artifacts = remove_entry(
        reg.git.read_file(view.head, ARTIFACTS_FILE),
        name,
        where=f"{reg.display_location}:{ARTIFACTS_FILE}",
    )
    commit = reg.git.write_commit(
        view.head,
        replace_dir=ARTIFACTS_FILE,
        files={},
        blobs={ARTIFACTS_FILE: artifacts},
        message=f"Deprecate {name}",
    )
    reg.git.update_branch(branch, commit, view.head)
    return publish_tag(
        reg,
        name=name,
        tag=tag,
        commit=commit,
        message=message,
        branch=branch,
        old=view.head,
        paths=[ARTIFACTS_FILE],
        after=after,
        sign=sign,
    )


# -- helpers --------------------------------------------------------------------------------


def _check_stage(reg: RegistryRepo, stage: str) -> None:
    allowed = reg.allowed_stages()
    if allowed is not None and stage not in allowed:
        raise StageNotAllowedError(stage, allowed)


def _last_deprecation(art: ArtifactState | None) -> int:
    return max((e.time for e in art.deprecations), default=0) if art else 0
