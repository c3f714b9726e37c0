"""`registry check`: the pull-request check of a registry (tags, packages, stages)."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import msgspec

from registry_sync.errors import RegistryError
from registry_sync.registry.gto_tags import looks_like_ours, parse_tag
from registry_sync.registry.repository import RegistryRepo, RegistryView

__all__ = ["CheckReport", "Problem", "check_registry"]


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    subject: str  # the tag, "model@version" or "model#stage" the problem is about
    message: str


class CheckReport(msgspec.Struct, frozen=True, kw_only=True):
    registry: str
    tags: int
    versions: int
    stages: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def _counter_gaps(names: list[str]) -> list[Problem]:
    """gto numbers a model's assignment-like tags #1, #2, ... with no gap; a missing number is
    a deleted tag, which rewrites history (`which --at` answers differently afterwards)."""
    seen: dict[str, set[int]] = {}
    for name in names:
        parsed = parse_tag(name)
        if parsed is not None and parsed.counter is not None:
            seen.setdefault(parsed.name, set()).add(parsed.counter)
    problems = []
    for model, counters in sorted(seen.items()):
        missing = sorted(set(range(1, max(counters) + 1)) - counters)
        if missing:
            listed = ", ".join(f"#{n}" for n in missing[:10]) + (
                ", ..." if len(missing) > 10 else ""
            )
            noun = "tag" if len(missing) == 1 else "tags"
            problems.append(
                Problem(
                    subject=model,
                    message=f"{noun} {listed} missing: a deleted tag rewrites the history "
                    "(which --at answers differently); restore it from a clone or the remote",
                )
            )
    return problems


def _tag_problems(reg: RegistryRepo, names: list[str]) -> list[Problem]:
    """Tags pointing at a missing object; GTO-looking tags that do not parse or are
    lightweight."""
    listing = reg.git.tag_listing()
    annotated = {t.name for t in listing.records}
    dangling = {ref.name: ref for ref in listing.dangling}
    problems: list[Problem] = []
    for name in names:
        if name in dangling:
            problems.append(
                Problem(
                    subject=name,
                    message=f"points to a missing object {dangling[name].object[:12]} (a push "
                    "cut short or a damaged repository): every reader skips it; delete or "
                    "re-push the tag",
                )
            )
        elif not looks_like_ours(name):
            continue
        elif parse_tag(name) is None:
            problems.append(Problem(subject=name, message="looks like a GTO tag, does not parse"))
        elif name not in annotated:
            problems.append(
                Problem(subject=name, message="lightweight tag: gto ignores it, so do we")
            )
    return problems


def check_registry(reg: RegistryRepo, *, verify_signatures: bool = False) -> CheckReport:
    """Every tag points at an object the repository has, every GTO-looking tag parses, no
    numbered tag is missing (#N has no gaps), every registered version's package at its
    commit is valid with matching digests, and every stage resolves to a registered version;
    with `verify_signatures` (and a trust policy on `reg`), every stage tag of a protected
    stage is signed by an allowed signer."""
    from registry_sync.package.read import read_package
    from registry_sync.registry.link import check_links, complete_package

    names = reg.git.tag_names()
    problems = _tag_problems(reg, names)
    problems.extend(_counter_gaps(names))
    view = reg.view()
    allowed = reg.allowed_stages()
    versions = stages = 0
    for model, art in sorted(view.state.items()):
        per_commit = Counter(v.commit for v in art.versions if not v.discovered)
        for commit, count in per_commit.items():
            if count > 1:
                problems.append(
                    Problem(subject=model, message=f"{count} versions registered at {commit[:12]}")
                )
        for version in art.registered_versions():
            if not version.is_active:
                continue
            versions += 1
            subject = f"{model}@{version.version}"
            with tempfile.TemporaryDirectory(prefix="stageserve-check-") as tmp:
                dest = Path(tmp) / model
                try:
                    dest.mkdir()
                    reg.git.export(version.commit, reg.package_path(model, version.commit), dest)
                    complete_package(dest)  # linked files and uris, checked like the rest
                    package = read_package(dest)
                except RegistryError as exc:
                    message = str(exc).replace(str(dest), reg.package_path(model, version.commit))
                    problems.append(Problem(subject=subject, message=message))
                    continue
            for message in check_links(reg, model, version.commit):
                problems.append(Problem(subject=subject, message=message))
            if package.manifest.name != model:
                problems.append(
                    Problem(
                        subject=subject,
                        message=f"model.yaml names the model {package.manifest.name!r}",
                    )
                )
        for stage in art.stages():
            found = art.resolve(stage)
            if found is None:
                continue
            stages += 1
            subject = f"{model}#{stage}"
            if allowed is not None and stage not in allowed:
                problems.append(Problem(subject=subject, message="stage is not listed in .gto"))
            if found.discovered:
                problems.append(
                    Problem(
                        subject=subject,
                        message=f"resolves to commit {found.commit[:12]}, not a registered version",
                    )
                )
    if verify_signatures:
        problems.extend(_signature_problems(view))
    return CheckReport(
        registry=reg.display_location,
        tags=len(names),
        versions=versions,
        stages=stages,
        problems=problems,
    )


def _signature_problems(view: RegistryView) -> list[Problem]:
    return [
        Problem(subject=event.tag or event.model, message=f"{check.status}: {check.reason}")
        for event, check in sorted(view.refused, key=lambda pair: (pair[0].time, pair[0].tag or ""))
    ]
