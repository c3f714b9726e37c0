"""The OS priority shadow work runs at: below the primary's, so a busy CPU serves requests.

Linux schedules threads, not processes: `sched_setscheduler(0, ...)` and `setpriority(...,
0, ...)` change the calling thread only (the shadow thread, or the shadow process's one
thread). `idle` is SCHED_IDLE: the thread runs when nothing else on its CPU wants to (CFS
gives it a weight of 3 against a normal thread's 1024, so it still moves, slowly, on a
saturated CPU); `low` is nice 19 (weight 15); `normal` leaves it as it is. Lowering a
priority needs no privilege; where the call is refused (another OS, a seccomp profile) the
work runs at the normal priority and a warning says so once.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

__all__ = ["ShadowPriority", "lower_priority"]

log = logging.getLogger("stageserve.shadow")

ShadowPriority = Literal["idle", "low", "normal"]


def lower_priority(priority: ShadowPriority) -> bool:
    """Set the calling thread's priority; True when it is now `priority`."""
    if priority == "normal":
        return True
    try:
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.setpriority(os.PRIO_PROCESS, 0, 19)
    except (AttributeError, OSError) as exc:  # not Linux, or refused
        log.warning("shadow work runs at the normal priority (%s refused: %s)", priority, exc)
        return False
    return True
