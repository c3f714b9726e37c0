"""The HTTP edge: what one client connection may cost before the app sees a request.

`EdgeLimits` (limits.py: header size and count, header/body deadlines, connections) and
`bounded_protocol` (protocol.py: uvicorn's httptools protocol enforcing them; overload is
answered 503 + Retry-After, not reset). Below everything but errors: it imports no gateway code.
"""

__all__ = ["limits", "protocol"]
