"""Model packages: the model.yaml manifest, signatures, and saving, writing, reading them.

`Manifest` (manifest.py), `read_package` (read.py: verifies every file's sha256),
`save_sklearn`/`save_statsmodels`/`save_onnx` (save.py), `write_package` (write.py),
signature inference and compatibility (signature.py), ONNX export (onnx_convert.py).
"""

__all__ = ["data", "manifest", "onnx_convert", "read", "save", "signature", "write"]
