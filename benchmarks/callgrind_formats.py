"""Run N requests of one format of benchmarks/protocol_cost.py in process, for callgrind.

Instructions per request = (Ir with N=3000 - Ir with N=0) / 3000: the two runs differ only
by the measured requests (same imports, model load and 200 warm-up requests), and
PYTHONHASHSEED=0 keeps them repeatable. TREE is the checkout to measure (an A/B: export the
older commit with `git archive`).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python benchmarks/callgrind_formats.py TREE "V2 JSON tensors" 3000
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

HARNESS = Path(__file__).with_name("protocol_cost.py")


def main() -> None:
    tree, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spec = importlib.util.spec_from_file_location("protocol_cost", HARNESS)
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    sys.path.insert(0, str(Path(tree).resolve()))
    import gateway
    from tests.models import NUMERIC_FEATURES, example_rows

    assert Path(gateway.__file__).is_relative_to(Path(tree).resolve()), gateway.__file__
    features = list(NUMERIC_FEATURES[:4])
    request = harness._requests(features, example_rows(1, tuple(features))[0])[name]
    app = harness._app(Path(tempfile.mkdtemp()))
    harness._cost(app, request, 200)  # warm: caches, first-call paths
    if count:
        assert harness._cost(app, request, count) is not None


if __name__ == "__main__":
    main()
