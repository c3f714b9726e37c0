"""Run `stageserve serve` and time every garbage collection it does (issue 17's c16 tail).

    .venv/bin/python -m benchmarks.gc_pauses --out gc.json [--window-s 6.5] -- serve --cache ...

Everything after `--` is the `stageserve` command line. On SIGTERM (or exit) the JSON file
gets, per generation, the number of collections, the longest and the total pause in ms,
counting only collections that ended in the last `--window-s` seconds (so a run's warm-up
and model loads can be left out: stop the server right after the measured load), plus how
many objects were frozen (`gc_freeze`) and what the collector still tracks by type. The
callbacks cost a few µs per collection, so compare runs of this launcher with each other,
not with `benchmarks/run.py`.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import gc
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any


class PauseLog:
    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float]] = []  # (generation, ms, ended at)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
        else:
            self.pauses.append((info["generation"], (now - self._started) * 1000, time.time()))

    def summary(self, window_s: float) -> dict[str, Any]:
        cut = time.time() - window_s
        by_gen: dict[int, list[float]] = collections.defaultdict(list)
        for generation, ms, ended in self.pauses:
            if ended >= cut:
                by_gen[generation].append(ms)
        tracked = collections.Counter(type(o).__name__ for o in gc.get_objects())
        return {
            "window_s": window_s,
            "collections": {
                str(g): {"count": len(v), "max_ms": round(max(v), 3), "total_ms": round(sum(v), 3)}
                for g, v in sorted(by_gen.items())
            },
            "frozen_objects": gc.get_freeze_count(),
            "tracked_objects": sum(tracked.values()),
            "tracked_by_type": tracked.most_common(10),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--window-s", type=float, default=6.5)
    p.add_argument("serve", nargs=argparse.REMAINDER, help="-- then stageserve's arguments")
    args = p.parse_args()
    argv = args.serve[1:] if args.serve[:1] == ["--"] else args.serve
    log = PauseLog()
    gc.callbacks.append(log)
    atexit.register(lambda: args.out.write_text(json.dumps(log.summary(args.window_s))))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from gateway.cli import main as stageserve

    sys.exit(stageserve(argv))


if __name__ == "__main__":
    main()
