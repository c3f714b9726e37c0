"""`stageserve` with uvicorn forced onto h11 + asyncio, to show what httptools + uvloop buy.

uvicorn picks httptools and uvloop by itself when they are installed (they are runtime
dependencies); this wrapper pins `uvicorn.Config`'s http/loop choice and then runs the real
CLI, so everything else about the server is unchanged.

    python benchmarks/stageserve_h11.py serve --cache DIR ...
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import uvicorn

    from gateway.cli import main as stageserve

    original = uvicorn.Config.__init__

    def pinned(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["http"] = "h11"
        kwargs["loop"] = "asyncio"
        original(self, *args, **kwargs)

    uvicorn.Config.__init__ = pinned  # type: ignore[method-assign]
    return stageserve(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
