"""Text from bundles, archives and cache entries, made safe to show on a terminal.

A bundle is written by someone else: its run id, parameter values, metric names,
file names and error messages may hold terminal escape sequences (which can
retitle the window, hide text or forge output) or rich markup (``[link=…]``).
Everything taken from such a file goes through :func:`safe` (for rich markup
output) or :func:`clean` (plain output) before the CLI prints it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.markup import escape

# C0 and C1 controls except newline and tab, DEL, the Unicode bidirectional
# overrides and isolates (which reorder what the terminal shows), and lone
# surrogates (a JSON escape can make one; no terminal encoding can write it).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean(text: str) -> str:
    """``text`` with each control character shown as an escape (``\\x1b``), never sent raw."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}", text)


def safe(value: Any) -> Any:
    """``value`` (strings, and strings inside dicts and lists, keys too) cleaned of
    control characters and with rich markup escaped, ready for ``console.print``."""
    if isinstance(value, str):
        return escape(clean(value))
    if isinstance(value, dict):
        return {safe(k): safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(safe(v) for v in value)
    return value


def trial_rows(records: list[Any]) -> list[dict[str, Any]]:
    """Journal records reduced to well-typed, display-safe fields for a trials table
    (a hand-edited journal may hold anything)."""
    rows = []
    for r in records:
        if not isinstance(r, dict):
            continue
        params, metrics = mapping(r.get("params")), mapping(r.get("metrics"))
        rows.append(safe({
            "id": str(r.get("id")),
            "status": str(r.get("status")),
            "cached": bool(r.get("cached")),
            "failure_class": str(r["failure_class"]) if r.get("failure_class") else None,
            "error": str(r["error"]) if r.get("error") else None,
            # rendered to text here: json.dumps after escaping would undo the escape
            "params": {str(k): _param_text(v) for k, v in params.items()},
            "metrics": {str(k): v for k, v in metrics.items()
                        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))},
        }))  # fmt: skip
    return rows


def _param_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v, default=str)


def mapping(value: Any) -> dict[str, Any]:
    """A dict taken from a bundle file, or an empty one when it holds something else."""
    return value if isinstance(value, dict) else {}
