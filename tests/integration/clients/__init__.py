"""Helpers for driving stock clients that cannot share the test venv (kserve's)."""
