"""The fold of registry events and the stage rule (the gto CLI's), on hand-made events."""

from __future__ import annotations

from registry_sync.registry.events import Event, fold
from registry_sync.registry.gto_tags import TagKind, format_tag

C1, C2, C3, HEAD = "1" * 40, "2" * 40, "3" * 40, "f" * 40


class History:
    """Builds tag events for model "m" the way the tags would read."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.counter = 0

    def add(self, kind: TagKind, time: int, commit: str, **kw: str) -> History:
        counted = kind in (TagKind.ASSIGN, TagKind.UNASSIGN)
        if counted:
            self.counter += 1
        tag = format_tag(kind, "m", counter=self.counter if counted else None, **kw)  # type: ignore[arg-type]
        self.events.append(
            Event(kind=kind.value, model="m", time=time, commit=commit, tag=tag, **kw)
        )
        return self

    def register(self, version: str, time: int, commit: str) -> History:
        return self.add(TagKind.REGISTER, time, commit, version=version)

    def assign(self, stage: str, time: int, commit: str) -> History:
        return self.add(TagKind.ASSIGN, time, commit, stage=stage)

    def unassign(self, stage: str, time: int, commit: str) -> History:
        return self.add(TagKind.UNASSIGN, time, commit, stage=stage)

    def resolve(self, stage: str, *, at: int | None = None, head: bool = False) -> str | None:
        head_info = (HEAD, 500, frozenset({"m"})) if head else None
        state = fold(self.events, {C1: 1, C2: 2, C3: 3}, head=head_info, at=at)
        found = state["m"].resolve(stage) if "m" in state else None
        return found.version if found else None


def _two() -> History:
    return History().register("v1", 10, C1).register("v2", 20, C2)


def test_the_latest_assignment_wins_so_reassigning_an_older_version_rolls_back() -> None:
    history = _two().assign("prod", 30, C1).assign("prod", 40, C2).assign("prod", 50, C1)
    assert history.resolve("prod") == "v1"
    assert history.resolve("prod", at=45) == "v2"
    assert history.resolve("prod", at=29) is None


def test_unassigning_the_serving_version_falls_back_to_an_earlier_assignment() -> None:
    history = _two().assign("prod", 30, C1).assign("prod", 40, C2).unassign("prod", 50, C2)
    assert history.resolve("prod") == "v1"
    history.unassign("prod", 60, C1)
    assert history.resolve("prod") is None


def test_a_deregistered_version_serves_no_stage() -> None:
    history = _two().assign("prod", 30, C1).assign("prod", 40, C2)
    history.add(TagKind.DEREGISTER, 50, C2, version="v2")
    assert history.resolve("prod") == "v1"
    assert history.resolve("prod", at=49) == "v2"


def test_a_deprecated_model_serves_nothing_until_a_newer_event() -> None:
    history = _two().assign("prod", 30, C2).add(TagKind.DEPRECATE, 40, C2)
    assert history.resolve("prod") is None
    assert history.resolve("prod", at=39) == "v2"
    history.assign("dev", 50, C1)
    assert history.resolve("prod") == "v2"


def test_a_deprecation_in_the_same_second_as_another_event_does_not_count() -> None:
    history = _two().assign("prod", 30, C2).add(TagKind.DEPRECATE, 30, C2)
    assert history.resolve("prod") == "v2"


def test_head_listing_the_model_after_a_deprecation_revives_it_as_in_gto() -> None:
    history = _two().assign("prod", 30, C2).add(TagKind.DEPRECATE, 40, C2)
    assert history.resolve("prod", head=True) == "v2"  # HEAD's commit is at 500
    assert history.resolve("prod", head=True, at=100) is None


def test_in_one_second_the_earlier_registered_version_wins_not_the_higher_counter() -> None:
    history = _two().assign("prod", 30, C1).assign("prod", 30, C2)
    assert history.resolve("prod") == "v1"
    other_order = _two().assign("prod", 30, C2).assign("prod", 30, C1)
    assert other_order.resolve("prod") == "v1"


def test_in_one_second_an_unassignment_beats_any_assignment() -> None:
    history = _two().assign("dev", 30, C2).unassign("dev", 30, C2).assign("dev", 30, C2)
    assert history.resolve("dev") is None


def test_an_assignment_to_an_unregistered_commit_is_a_version_named_by_the_commit() -> None:
    history = _two().assign("qa", 30, C3)
    assert history.resolve("qa") == C3


def test_semver_order_does_not_matter_only_time() -> None:
    history = History().register("v9.0.0", 10, C1).register("v1.0.0", 20, C2)
    history.assign("prod", 30, C1).assign("prod", 40, C2)
    assert history.resolve("prod") == "v1.0.0"
    state = fold(history.events, {})
    latest = state["m"].latest()
    assert latest is not None and latest.version == "v9.0.0"
