"""Random operation sequences applied with the real gto resolve in stageserve as `gto show`.

Each example builds a fresh repository, applies register/assign/unassign/deregister/deprecate
through gto's Python API with a controlled tag clock (so several events often share one
second), then compares every (model, stage) with `gto show MODEL#STAGE --json` (gto's CLI,
in-process), the registry summary with `gto show --json`, and `--at` answers for every second
with what `gto show --json` said once that second was over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_sync.registry.git_registry import GitRegistry
from tests.gto_driver import commit_package, gto_clock, gto_registry, gto_stage
from tests.registry_packages import init_registry

MODELS = ("m", "n")
STAGES = ("dev", "prod")

_version = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 3)).map(
    lambda v: f"v{v[0]}.{v[1]}.{v[2]}"
)
_model = st.sampled_from(MODELS)
_pick = st.integers(0, 7)
_stage = st.sampled_from(STAGES)
_operation = st.one_of(
    st.tuples(st.just("register"), _model, _version, st.booleans()),
    st.tuples(st.just("assign"), _model, _pick, _stage),
    st.tuples(st.just("assign"), _model, _pick, _stage),
    st.tuples(st.just("unassign"), _model, _pick, _stage),
    st.tuples(st.just("deregister"), _model, _pick),
    st.tuples(st.just("deprecate"), _model),
)
# Seconds the clock moves before each step: mostly none, so ties on gto's one-second
# timestamps are the common case rather than the exception.
_step = st.tuples(_operation, st.sampled_from((0, 0, 0, 1, 2)))
_first = st.tuples(st.tuples(st.just("register"), _model, _version, st.just(True)), st.just(1))


def _apply(
    repo: Path, operation: tuple[Any, ...], now: int, versions: dict[str, list[str]]
) -> None:
    import gto.api
    from gto.exceptions import GTOException

    kind, model = operation[0], operation[1]
    registered = versions[model]
    try:
        if kind == "register":
            version, listed = operation[2], operation[3]
            if version in registered:
                return
            commit_package(repo, model, version, now, listed=listed)
            gto.api.register(str(repo), model, "HEAD", version=version)
            registered.append(version)
        elif not registered and kind != "deprecate":
            return
        elif kind == "assign":
            version = registered[operation[2] % len(registered)]
            gto.api.assign(str(repo), model, operation[3], version=version, force=True)
        elif kind == "unassign":
            version = registered[operation[2] % len(registered)]
            gto.api.unassign(str(repo), model, stage=operation[3], version=version, force=True)
        elif kind == "deregister":
            gto.api.deregister(str(repo), model, version=registered[operation[2] % len(registered)])
        else:
            try:
                gto.api.deprecate(str(repo), model)
            except GTOException:
                gto.api.deprecate(str(repo), model, force=True)
    except GTOException:
        pass  # gto refused (e.g. deregistering twice): nothing was written


def _ours(reg: GitRegistry, at: int | None = None) -> dict[tuple[str, str], str | None]:
    state = reg.view(at=at).state
    answers: dict[tuple[str, str], str | None] = {}
    for model in MODELS:
        for stage in STAGES:
            found = state[model].resolve(stage) if model in state else None
            answers[(model, stage)] = found.version if found else None
    return answers


def _gto_show(repo: Path) -> dict[tuple[str, str], str | None]:
    """Every `gto show MODEL#STAGE --json` answer."""
    return {(m, s): gto_stage(repo, m, s) for m in MODELS for s in STAGES}


def _gto_summary(repo: Path) -> dict[tuple[str, str], str | None]:
    """The same answers from one `gto show --json` (same rule; deprecated models left out)."""
    summary = gto_registry(repo)
    return {(m, s): summary.get(m, {}).get("stage", {}).get(s) for m in MODELS for s in STAGES}


@pytest.mark.slow
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=_first, steps=st.lists(_step, min_size=1, max_size=10))
def test_random_gto_histories_resolve_in_stageserve_exactly_as_gto_show(
    tmp_path_factory: pytest.TempPathFactory,
    first: tuple[tuple[Any, ...], int],
    steps: list[tuple[tuple[Any, ...], int]],
) -> None:
    repo = init_registry(tmp_path_factory.mktemp("gto"))
    versions: dict[str, list[str]] = {m: [] for m in MODELS}
    seen: list[tuple[int, dict[tuple[str, str], str | None]]] = []
    plan = [first, *steps]
    with gto_clock() as clock:
        for index, (operation, advance) in enumerate(plan):
            clock.now += advance
            _apply(repo, operation, clock.now, versions)
            # The registry as of this second is final once the next step moves the clock:
            # `which --at` this second must say what gto says now.
            if index + 1 == len(plan) or plan[index + 1][1] > 0:
                seen.append((clock.now, _gto_summary(repo)))
    reg = GitRegistry(repo)
    assert _ours(reg) == _gto_show(repo) == seen[-1][1]
    for when, answers in seen:
        # Once second `when` is over, its events all count.
        assert _ours(reg, at=when + 1) == answers, f"at {when}"
    summary = gto_registry(repo)
    listed = {m.name: m for m in reg.list_models()}
    assert set(listed) == set(summary)
    for name, gto_model in summary.items():
        assert listed[name].latest == gto_model["version"]
        assert listed[name].stages == {s: v for s, v in gto_model["stage"].items() if v}
