"""The minimal Litestar route: msgspec-typed body, one onnxruntime call, JSON out.

    BENCH_ONNX='{"linear": ".../model.onnx"}' python -m uvicorn --factory \
        benchmarks.baselines.minimal_litestar:create_app --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, post
from litestar.exceptions import NotFoundException

from benchmarks.baselines.onnx_models import Body, load_models

__all__ = ["create_app"]


def create_app() -> Litestar:
    models = load_models()

    @post("/predict/{model:str}", status_code=200)
    async def predict(model: str, data: Body) -> dict[str, Any]:
        found = models.get(model)
        if found is None:
            raise NotFoundException(f"no model {model}")
        return {"predictions": found.predict(data)}

    return Litestar([predict])
