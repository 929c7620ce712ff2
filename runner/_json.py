"""JSON encoders made once and reused: ``json.JSONEncoder.encode`` builds a new
C encoder on every call (about a microsecond, as much as encoding a small
record), which the per-trial paths (a journal line, a trial's key, a point's
key) would pay hundreds of thousands of times.

:func:`encoder` gives what ``json.JSONEncoder(**options).encode`` gives, the
same text for every value: the C encoder it builds is the one ``encode`` builds
(same options), made without the circular-reference check's shared state so one
can serve every thread. A circular value exhausts the recursion limit there
instead; it is then encoded again by ``encode`` itself, which raises its own
``ValueError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# the C encoder json.JSONEncoder.encode builds (None without CPython's accelerator)
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


def encoder(**options: Any) -> Callable[[Any], str]:
    """``json.JSONEncoder(**options).encode``, made once (``indent`` is not supported)."""
    reference = json.JSONEncoder(**options)
    if _c_make_encoder is None or reference.indent is not None:
        return reference.encode
    escape = json.encoder.encode_basestring_ascii if reference.ensure_ascii else json.encoder.encode_basestring
    c_encode = _c_make_encoder(None, reference.default, escape, None, reference.key_separator,
                               reference.item_separator, reference.sort_keys, reference.skipkeys,
                               reference.allow_nan)  # fmt: skip
    join = "".join

    def encode(value: Any) -> str:
        try:
            return join(c_encode(value, 0))
        except RecursionError:  # a circular value (or one nested too deep): as encode fails on it
            return reference.encode(value)

    return encode


# what json.loads parses with (its default decoder's scanner: C's)
_scan_once: Callable[[str, int], tuple[Any, int]] = json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``, the same value or error, faster for what a journal
    line is: compact UTF-8 JSON of an object, then at most a newline.
    ``json.loads`` also detects the encoding of bytes and skips whitespace
    around the value with regular expressions; anything else goes through it."""
    if data[:1] in (b"{", "{") and data[1:2] not in (b"\x00", b""):  # bytes: UTF-8, as json.detect_encoding finds
        text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
        try:
            value, end = _scan_once(text, 0)
        except StopIteration:
            return json.loads(data)  # its error
        rest = len(text) - end
        if rest == 0 or (rest == 1 and text[end] == "\n"):
            return value
    return json.loads(data)
