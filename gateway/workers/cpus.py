"""How many CPUs this process may use: its affinity mask and its cgroup's CPU quota.

`os.cpu_count()` counts the machine's CPUs; a container limited to 2 CPUs on a 64-core node
would start 64 workers, each slowed by the quota's throttling. The affinity mask
(`taskset`, a cpuset) bounds which CPUs may run us; the cgroup's CFS quota (`cpu.max` in
cgroup v2, `cpu.cfs_quota_us / cpu.cfs_period_us` in v1; Kubernetes' CPU limit) bounds how
much of them. Every cgroup from ours up to the root may set a quota: the smallest counts,
rounded up (a 1.5-CPU limit gets 2 workers, each busy three quarters of the time).

joblib (a scikit-learn dependency) has `cpu_count()` with quotas too, but it reads only the
hierarchy's root files: right inside a container with its own cgroup namespace, wrong for a
process in a nested cgroup (a systemd unit's `CPUQuota=`, a test's cgroup), so this one
follows `/proc/self/cgroup` to our own.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "usable_cpus", "worker_count"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def worker_count(setting: int | str) -> int:
    """The number of workers `workers` asks for (`auto`: `usable_cpus()`)."""
    return usable_cpus() if setting == "auto" else int(setting)


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs in the affinity mask, capped by the cgroup CPU quota (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return max(1, cpus)


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota (in CPUs) over our cgroup and its ancestors; None: no quota."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        del hierarchy
        if controllers == "":  # cgroup v2: the unified hierarchy
            limits += _quotas(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's hierarchy
            mount = next(
                (root / name for name in ("cpu", "cpu,cpuacct") if (root / name).is_dir()), None
            )
            if mount is not None:
                limits += _quotas(mount, path, _v1_quota)
    return min(limits) if limits else None


def _quotas(mount: Path, path: str, read: object) -> list[float]:
    """The quota of each cgroup from `path` up to the mount's root that has one."""
    assert callable(read)
    found = []
    current = Path(path.strip() or "/")
    while True:
        folder = mount / str(current).lstrip("/")
        quota = read(folder)
        if quota is not None:
            found.append(quota)
        if current == current.parent:
            return found
        current = current.parent


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period
