"""Which (model, stage) is shadowed by which stage, at what sample fraction, chosen how.

A request is in the sample when the hash of its request id falls below the fraction: the
same id is always in or always out, on every replica and after restarts (blake2b, not
Python's per-process salted `hash`; crc32 was tried and is visibly lumpy on sequential ids).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = ["ShadowPlan", "ShadowPlans", "in_sample", "sample_point", "shadow_plans"]

_SCALE = 2**64


def sample_point(request_id: str) -> float:
    """The request id's place in [0, 1): stable across processes and machines."""
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def in_sample(request_id: str, fraction: float) -> bool:
    return fraction >= 1.0 or sample_point(request_id) < fraction


class ShadowPlan:
    """Shadow `stage` of `model` with the version routed in `shadow_stage`."""

    __slots__ = ("model", "sample", "shadow_stage", "stage")

    def __init__(self, model: str, stage: str, shadow_stage: str, sample: float) -> None:
        self.model = model
        self.stage = stage
        self.shadow_stage = shadow_stage
        self.sample = sample

    def describe(self) -> dict[str, Any]:
        return {"stage": self.stage, "shadow_stage": self.shadow_stage, "sample": self.sample}


# model -> primary stage -> plan (two dict lookups on the request path, no tuple keys)
ShadowPlans = dict[str, dict[str, ShadowPlan]]


def shadow_plans(
    shadow: Mapping[str, Mapping[str, str]],
    *,
    sample: float = 1.0,
    sample_by_model: Mapping[str, float] | None = None,
) -> ShadowPlans:
    """The settings' `shadow`, `shadow_sample` and `shadow_sample_by_model`, as plans."""
    by_model = sample_by_model or {}
    return {
        model: {
            stage: ShadowPlan(model, stage, shadow_stage, by_model.get(model, sample))
            for stage, shadow_stage in sorted(stages.items())
        }
        for model, stages in sorted(shadow.items())
        if stages
    }
