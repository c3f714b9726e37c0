"""GTO tag names and versions, checked against gto's own parser and SemVer class."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_sync.errors import InvalidTagError
from registry_sync.registry.gto_tags import (
    ParsedTag,
    TagKind,
    bump_version,
    check_name,
    check_version,
    format_tag,
    looks_like_ours,
    next_counter,
    parse_tag,
    tag_message,
    version_key,
)


@pytest.mark.parametrize(
    ("tag", "parsed"),
    [
        ("cost_predictor@v1.2.3", ParsedTag("cost_predictor", TagKind.REGISTER, version="v1.2.3")),
        ("m@v1.0.0-rc.1+b5!", ParsedTag("m", TagKind.DEREGISTER, version="v1.0.0-rc.1+b5")),
        ("m#prod#3", ParsedTag("m", TagKind.ASSIGN, stage="prod", counter=3)),
        ("m#prod!#12", ParsedTag("m", TagKind.UNASSIGN, stage="prod", counter=12)),
        ("m#prod", ParsedTag("m", TagKind.ASSIGN, stage="prod")),
        ("m@deprecated", ParsedTag("m", TagKind.DEPRECATE)),
        ("m@deprecated#7", ParsedTag("m", TagKind.DEPRECATE, counter=7)),
        ("m@v0.0.1#2", ParsedTag("m", TagKind.REGISTER, version="v0.0.1", counter=2)),
        ("models/a=rf#dev#1", ParsedTag("models/a:rf", TagKind.ASSIGN, stage="dev", counter=1)),
    ],
)
def test_every_gto_tag_form_parses_to_its_event(tag: str, parsed: ParsedTag) -> None:
    assert parse_tag(tag) == parsed


@pytest.mark.parametrize(
    "tag", ["v1.0.0", "m@1.0.0", "m@v1.0", "m@v01.0.0", "m#", "-m#prod#1", "m@created", "m##1"]
)
def test_tags_that_are_not_gto_events_parse_to_none(tag: str) -> None:
    assert parse_tag(tag) is None


def test_a_malformed_tag_that_looks_like_ours_is_told_apart_from_a_release_tag() -> None:
    assert looks_like_ours("m@1.0.0")
    assert looks_like_ours("m#prod#x")
    assert not looks_like_ours("v1.0.0")
    assert not looks_like_ours("release-2024")


def test_format_tag_writes_what_parse_tag_reads() -> None:
    for kind, kwargs in [
        (TagKind.REGISTER, {"version": "v1.0.0"}),
        (TagKind.DEREGISTER, {"version": "v1.0.0"}),
        (TagKind.ASSIGN, {"stage": "prod", "counter": 4}),
        (TagKind.UNASSIGN, {"stage": "prod", "counter": 5}),
        (TagKind.DEPRECATE, {}),
    ]:
        tag = format_tag(kind, "m", **kwargs)  # type: ignore[arg-type]
        parsed = parse_tag(tag)
        assert parsed is not None and parsed.kind is kind
    assert format_tag(TagKind.UNASSIGN, "m", stage="prod", counter=5) == "m#prod!#5"
    assert format_tag(TagKind.DEREGISTER, "m", version="v1.0.0") == "m@v1.0.0!"


def test_the_counter_counts_every_counted_tag_of_the_model_and_no_other() -> None:
    tags = ["m@v0.0.1", "m#dev#1", "m#prod!#4", "m@deprecated#2", "other#prod#9", "m#prod"]
    assert next_counter("m", tags) == 5
    assert next_counter("other", tags) == 10
    assert next_counter("new", tags) == 1


def test_tag_messages_are_gtos_default_messages() -> None:
    assert tag_message(TagKind.REGISTER, "m", version="v1") == "Registering artifact m version v1"
    assert (
        tag_message(TagKind.ASSIGN, "m", stage="prod", version="v1")
        == "Assigning stage prod to artifact m version v1"
    )
    assert tag_message(TagKind.DEPRECATE, "m") == "Deprecating artifact 'm'"


def test_invalid_names_and_versions_are_refused_with_the_rule() -> None:
    with pytest.raises(InvalidTagError, match="letters, digits"):
        check_name("bad name")
    with pytest.raises(InvalidTagError, match="SemVer"):
        check_version("1.0.0")
    assert check_name("a/b_c-1") == "a/b_c-1"


def test_bumps_follow_gto_and_start_at_its_minimal_version() -> None:
    assert bump_version(None, "patch") == "v0.0.1"
    assert bump_version("v1.2.3-rc.1", "patch") == "v1.2.4"
    assert bump_version("v1.2.3", "minor") == "v1.3.0"
    assert bump_version("v1.2.3", "major") == "v2.0.0"


_part = st.sampled_from(["m", "cost_predictor", "a/b", "x-1", "dir=m", "prod", "v1", "1"])
_sep = st.sampled_from(["@", "#", "!", "@v", ".", "-", "+", "=", ""])
_number = st.sampled_from(["0", "1", "2", "10", "01", "rc", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_part, _sep, _number), min_size=1, max_size=8))
def test_parse_tag_agrees_with_gtos_parse_name_on_arbitrary_strings(parts: list[str]) -> None:
    from gto.constants import Action
    from gto.tag import parse_name

    tag = "".join(parts)
    theirs = parse_name(tag, raise_on_fail=False)
    ours = parse_tag(tag)
    if not theirs or "action" not in theirs:  # gto cannot index @created either
        assert ours is None
        return
    assert ours is not None
    kinds = {
        Action.REGISTER: TagKind.REGISTER,
        Action.DEREGISTER: TagKind.DEREGISTER,
        Action.ASSIGN: TagKind.ASSIGN,
        Action.UNASSIGN: TagKind.UNASSIGN,
        Action.DEPRECATE: TagKind.DEPRECATE,
    }
    assert ours.kind is kinds[theirs["action"]]
    assert (ours.name, ours.version, ours.stage, ours.counter) == (
        theirs["name"],
        theirs.get("version"),
        theirs.get("stage"),
        theirs.get("counter"),
    )


def test_version_order_is_gtos_semver_order() -> None:
    from functools import cmp_to_key

    from gto.versions import SemVer

    versions = [
        "v1.0.0",
        "v1.0.0-rc.1",
        "v1.0.0-rc.10",
        "v1.0.0-rc.2",
        "v1.0.0-alpha",
        "v1.0.0-alpha.1",
        "v0.9.12",
        "v0.10.0",
        "v2.0.0",
        "v1.0.1-0",
    ]

    def compare(a: str, b: str) -> int:
        return -1 if SemVer(a) < SemVer(b) else (1 if SemVer(b) < SemVer(a) else 0)

    assert sorted(versions, key=version_key) == sorted(versions, key=cmp_to_key(compare))
