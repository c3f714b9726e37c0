"""Request and response validation built from a version's signature.

`RequestSchema` (request_schema.py) decodes every accepted body shape into an `InputBatch` in
one msgspec pass and checks outputs (outputs.py); errors name the JSON path.
"""

__all__ = ["outputs", "request_schema", "validation_errors"]
