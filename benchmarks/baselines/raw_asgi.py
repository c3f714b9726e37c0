"""A raw ASGI app doing the same inference as the minimal route, with nothing else around it.

    BENCH_ONNX='{"linear": ".../model.onnx"}' python -m uvicorn --factory \
        benchmarks.baselines.raw_asgi:create_app --host 127.0.0.1 --port 8002
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from benchmarks.baselines.onnx_models import Body, load_models

__all__ = ["create_app"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_HEADERS = [(b"content-type", b"application/json")]


def create_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    models = load_models()
    decode = msgspec.json.Decoder(Body).decode
    encode = msgspec.json.Encoder().encode
    prefix = len("/predict/")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        model = models.get(scope["path"][prefix:])
        status, payload = 404, b'{"error":"no such model"}'
        if model is not None:
            try:
                status, payload = (
                    200,
                    encode({"predictions": model.predict(decode(b"".join(chunks)))}),
                )
            except msgspec.ValidationError as exc:
                status, payload = 422, encode({"error": str(exc)})
        headers = [*_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app
