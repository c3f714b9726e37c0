"""`--workers auto`: the affinity mask and the tightest cgroup CPU quota on our path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.workers.cpus import cgroup_cpu_limit, usable_cpus, worker_count

ROOT = Path(__file__).resolve().parents[4]


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cgroup_v2_quota_of_our_own_cgroup_or_an_ancestor_the_tightest_wins(
    tmp_path: Path,
) -> None:
    _tree(
        tmp_path,
        {
            "fs/cpu.max": "max 100000\n",
            "fs/kubepods/cpu.max": "400000 100000\n",
            "fs/kubepods/pod1/cpu.max": "150000 100000\n",
            "fs/kubepods/pod1/app/cpu.max": "max 100000\n",
            "self": "0::/kubepods/pod1/app\n",
        },
    )
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "self") == 1.5
    # 1.5 CPUs: two workers (each busy three quarters of the time), never more than affinity.
    assert usable_cpus(tmp_path / "fs", tmp_path / "self") == min(2, len(_affinity()))


def test_cgroup_v1_cfs_quota_and_no_quota(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "fs/cpu/cpu.cfs_quota_us": "-1\n",
            "fs/cpu/cpu.cfs_period_us": "100000\n",
            "fs/cpu/job/cpu.cfs_quota_us": "50000\n",
            "fs/cpu/job/cpu.cfs_period_us": "100000\n",
            "self": "4:memory:/job\n3:cpu,cpuacct:/job\n",
            "free": "3:cpu,cpuacct:/\n",
        },
    )
    # cpu,cpuacct is mounted as "cpu" here (one of the two names Linux distributions use).
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "self") == 0.5
    assert usable_cpus(tmp_path / "fs", tmp_path / "self") == 1
    assert cgroup_cpu_limit(tmp_path / "fs", tmp_path / "free") is None


def _affinity() -> set[int]:
    import os

    return os.sched_getaffinity(0)


def test_the_affinity_mask_bounds_auto() -> None:
    # A real mask: taskset pins the child to one CPU.
    done = subprocess.run(
        ["taskset", "-c", str(min(_affinity())), sys.executable, "-c",
         "from gateway.workers.cpus import worker_count; print(worker_count('auto'))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() == "1"
    assert worker_count(3) == 3


def test_a_real_cgroup_quota_bounds_auto(tmp_path: Path) -> None:
    """Where this process may make a cgroup (root, a writable cpu controller): a child in a
    cgroup limited to one CPU counts one, whatever the machine has."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    parent = Path("/sys/fs/cgroup") if v2.exists() else Path("/sys/fs/cgroup/cpu")
    group = parent / f"stageserve-test-{tmp_path.name}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup here: {exc}")
    try:
        if v2.exists():
            (group / "cpu.max").write_text("100000 100000\n")
        else:
            (group / "cpu.cfs_quota_us").write_text("100000\n")
        script = (
            f"echo $$ > {group}/cgroup.procs && exec {sys.executable} -c "
            "'from gateway.workers.cpus import worker_count; print(worker_count(\"auto\"))'"
        )
        done = subprocess.run(
            ["sh", "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "1"
    finally:
        group.rmdir()
