"""GTO's git tag names: parse and format them, and the SemVer rules gto enforces on versions.

Mirrors gto 1.10 (`gto/constants.py` for the regular expressions, `gto/tag.py` for the tag
templates and the `#N` counter, `gto/versions.py` for SemVer with a `v` prefix), so a tag
stageserve writes is one `gto` reads, and the other way round.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from registry_sync.errors import InvalidTagError, UnservableNameError

__all__ = [
    "ParsedTag",
    "TagKind",
    "bump_version",
    "check_name",
    "check_servable_name",
    "check_version",
    "format_tag",
    "is_valid_version",
    "looks_like_ours",
    "next_counter",
    "parse_tag",
    "tag_message",
    "version_key",
]

# gto/constants.py, character for character: a name, a SemVer 2.0 version after "v", and the
# full tag grammar. A name may carry a "dirname:" prefix, written "dirname=" inside a tag.
_NAME = r"[a-zA-Z0-9]([a-zA-Z0-9-/_]*[a-zA-Z0-9])?"
_SEMVER = (
    r"(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_FULLNAME_IN_TAG = f"(?P<dirname>[a-zA-Z0-9-_./]+=)?(?P<name>{_NAME})"
_TAG_RE = re.compile(
    f"^(?P<artifact>{_FULLNAME_IN_TAG})"
    f"(((#(?P<stage>{_NAME})|@(?P<version>v{_SEMVER}))(?P<cancel>!?))"
    r"|@((?P<deprecated>deprecated)|(?P<created>created)))(#(?P<counter>[0-9]+))?$"
)
_NAME_RE = re.compile(f"^{_NAME}$")
_VERSION_RE = re.compile(f"^v{_SEMVER}$")
# A tag "looks like ours" when it starts like a name and goes on with one of gto's separators;
# such a tag that does not parse is reported by `registry check` instead of silently skipped.
_OURS_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-/_.=]*[@#]")


class TagKind(enum.StrEnum):
    """The registry event a tag records; values are gto's event names (`gto history`)."""

    REGISTER = "registration"
    DEREGISTER = "deregistration"
    ASSIGN = "assignment"
    UNASSIGN = "unassignment"
    DEPRECATE = "deprecation"


@dataclass(frozen=True, slots=True)
class ParsedTag:
    name: str
    kind: TagKind
    version: str | None = None
    stage: str | None = None
    counter: int | None = None


def parse_tag(tag: str) -> ParsedTag | None:
    """The event a tag records, or None when it is not a GTO tag (gto/tag.py `parse_name`).

    `NAME@created` tags match gto's grammar but record no event gto can index: None as well.
    """
    match = _TAG_RE.match(tag)
    if match is None or match["created"]:
        return None
    name = match["artifact"].replace("=", ":")
    counter = int(match["counter"]) if match["counter"] else None
    cancel = match["cancel"] == "!"
    if match["deprecated"]:
        return ParsedTag(name, TagKind.DEPRECATE, counter=counter)
    if match["version"]:
        kind = TagKind.DEREGISTER if cancel else TagKind.REGISTER
        return ParsedTag(name, kind, version=match["version"], counter=counter)
    kind = TagKind.UNASSIGN if cancel else TagKind.ASSIGN
    return ParsedTag(name, kind, stage=match["stage"], counter=counter)


def looks_like_ours(tag: str) -> bool:
    return bool(_OURS_RE.match(tag))


def format_tag(
    kind: TagKind,
    name: str,
    *,
    version: str | None = None,
    stage: str | None = None,
    counter: int | None = None,
) -> str:
    """gto/tag.py `TagTemplates` (+ `#N` when a counter is given, as gto's non-simple tags)."""
    artifact = name.replace(":", "=")
    if kind in (TagKind.REGISTER, TagKind.DEREGISTER):
        if version is None:
            raise ValueError(f"{kind} tag needs a version")
        tag = f"{artifact}@{version}" + ("!" if kind is TagKind.DEREGISTER else "")
    elif kind in (TagKind.ASSIGN, TagKind.UNASSIGN):
        if stage is None:
            raise ValueError(f"{kind} tag needs a stage")
        tag = f"{artifact}#{stage}" + ("!" if kind is TagKind.UNASSIGN else "")
    else:
        tag = f"{artifact}@deprecated"
    return tag if counter is None else f"{tag}#{counter}"


def next_counter(name: str, tags: Iterable[str]) -> int:
    """gto's N: one more than the largest counter on any tag of this artifact, any kind."""
    largest = 0
    for tag in tags:
        parsed = parse_tag(tag)
        if parsed and parsed.name == name and parsed.counter is not None:
            largest = max(largest, parsed.counter)
    return largest + 1


def tag_message(
    kind: TagKind, name: str, *, version: str | None = None, stage: str | None = None
) -> str:
    """The annotated tag message gto writes by default (gto/registry.py), quirks included."""
    if kind is TagKind.REGISTER:
        return f"Registering artifact {name} version {version}"
    if kind is TagKind.DEREGISTER:
        return f"Deregistering artifact {name} version {version}"
    if kind is TagKind.ASSIGN:
        return f"Assigning stage {stage} to artifact {name} version {version}"
    if kind is TagKind.UNASSIGN:
        return f"Unassigning stage '{stage}' to artifact '{name}' version '{version}'"
    return f"Deprecating artifact '{name}'"


def check_name(value: str, what: str = "model name") -> str:
    """gto's `assert_name_is_valid`: letters, digits, '_', '-', '/', alphanumeric at both ends."""
    if not _NAME_RE.match(value):
        raise InvalidTagError(
            value,
            f"invalid {what}: only letters, digits, '_', '-' and '/' are allowed, "
            "and it must start and end with a letter or a digit",
        )
    return value


def check_servable_name(value: str) -> str:
    """A model name stageserve can serve: gto's grammar without '/'. Every route takes the
    model as one path segment, and an encoded slash (%2F) is decoded, refused or merged
    differently by each proxy on the way, so such a model would load but be unreachable."""
    if "/" in value:
        raise UnservableNameError(value)
    return value


def is_valid_version(value: str) -> bool:
    return bool(_VERSION_RE.match(value))


def check_version(value: str) -> str:
    if not is_valid_version(value):
        raise InvalidTagError(value, "a version is 'v' + SemVer 2.0, e.g. v1.2.3 or v1.0.0-rc.1")
    return value


def version_key(value: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """Sort key with SemVer 2.0 precedence (python-semver's, as gto uses): build ignored,
    a pre-release sorts before its release, numeric identifiers before alphanumeric ones."""
    match = _VERSION_RE.match(value)
    if match is None:
        raise InvalidTagError(value, "not a version of the form vX.Y.Z")
    pre = match["prerelease"]
    parts: tuple[tuple[int, int | str], ...] = tuple(
        (0, int(p)) if p.isdigit() else (1, p) for p in (pre.split(".") if pre else ())
    )
    return (int(match["major"]), int(match["minor"]), int(match["patch"]), 0 if pre else 1, parts)


def bump_version(value: str | None, part: str) -> str:
    """The next version after `value` (gto's bump drops pre-release and build).

    The first version is v0.0.1 (gto's minimal version), v0.1.0 or v1.0.0 by `part`.
    """
    if value is None:
        return {"major": "v1.0.0", "minor": "v0.1.0"}.get(part, "v0.0.1")
    major, minor, patch, _, _ = version_key(value)
    if part == "major":
        return f"v{major + 1}.0.0"
    if part == "minor":
        return f"v{major}.{minor + 1}.0"
    if part == "patch":
        return f"v{major}.{minor}.{patch + 1}"
    raise ValueError(f"bump must be major, minor or patch, not {part!r}")
