"""Secret values never reach the bundle, the cache or the terminal.

:func:`scrub` replaces every occurrence of a secret value in a trial's result,
wherever a trial can put text: its log, error and traceback, ``ctx.log``
history (names and values), metric names, artifact names and contents.
Output a trial's subprocesses write straight to the worker's file descriptors
is redacted on the worker (:mod:`runner._plugin`).
"""

from __future__ import annotations

from typing import Any

MASK = "[secret]"


def scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with each secret replaced by ``[secret]`` in every string and
    bytes inside it (dict keys included)."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    encoded = [(s.encode(), MASK.encode()) for s in secrets]
    return _walk(value, secrets, encoded)


def _walk(value: Any, secrets: list[str], encoded: list[tuple[bytes, bytes]]) -> Any:
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, MASK)
        return value
    if isinstance(value, bytes):
        blob = value
        for secret, mask in encoded:
            blob = blob.replace(secret, mask)
        return blob
    if isinstance(value, dict):
        return {_walk(k, secrets, encoded): _walk(v, secrets, encoded) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_walk(v, secrets, encoded) for v in value)
    return value
