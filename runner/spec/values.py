"""Value types of spec v1: durations, byte sizes, spec-relative paths, plain
parameter values, glob patterns, and how a bad value is described."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping"
    }.get(type(value), type(value).__name__)


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: Any) -> Any:
    """``"10m"``, ``"1h30m"``, ``"45s"``, ``90`` (seconds) → seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 10m or 1h")
    if isinstance(value, (int, float)):
        return _bounded_duration(float(value))
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if value.strip() and m and any(m.groups()):
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return _bounded_duration(h * 3600 + mi * 60 + s)
    raise ValueError(f"expected a duration like 30s, 10m or 1h, got {value!r}")


MAX_DURATION = 366 * 86400.0


def _bounded_duration(seconds: float) -> float:
    if math.isfinite(seconds) and seconds > MAX_DURATION:
        raise ValueError(f"{seconds:g}s is longer than the limit of 366 days")
    return seconds


_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
MAX_MEMORY = 2**50  # 1 PiB: more memory than any one worker has, and far below int64 overflow


def parse_bytes(value: Any) -> Any:
    """``"2GiB"``, ``"500MB"``, ``2147483648`` → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 512MiB or 2GiB")
    size: int | float | None = None
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = _BYTES_RE.match(value)
        if m:
            number, unit = float(m.group(1)), (m.group(2) or "").lower()
            base = 1024 if "i" in unit else 1000
            power = "bkmgt".index(unit[0]) if unit else 0
            size = number * base**power
    if size is None:
        raise ValueError(f"expected a size like 512MiB or 2GiB, got {value!r}")
    if not size < MAX_MEMORY:  # also catches a float that overflowed to inf
        raise ValueError(f"{short_repr(value)} is larger than the limit of 1 PiB")
    return int(size)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base")
    path = Path(value).expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return Path(_normpath(path))


def _normpath(path: Path) -> str:
    return os.path.normpath(os.fspath(path))


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
ByteSize = Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)]
SpecPath = Annotated[Path, AfterValidator(_resolve_path)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


MAX_INT = 2**63  # integers a spec may hold (parameter values, ranges): what JSON readers and int64 keep


def _plain_value(value: Any) -> Any:
    """A parameter value must survive canonical JSON unchanged: strings, finite
    numbers, booleans, null, and lists or mappings of them."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if not -MAX_INT <= value < MAX_INT:
            raise ValueError(f"integer {short_repr(value)} is outside the 64-bit range")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
        return value
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain_value(v) for k, v in value.items()}
    raise ValueError(
        f"{type(value).__name__} {short_repr(str(value))} is not a valid parameter value: use a string, number, "
        "boolean, null, or a list or mapping of them (quote a date to make it a string)"
    )


PlainValue = Annotated[Any, AfterValidator(_plain_value)]


def pattern_problem(pattern: str) -> str | None:
    """Why an include glob could match files outside code.root (``None``: it cannot)."""
    pure = PurePosixPath(pattern.replace("\\", "/"))
    if pure.is_absolute() or pattern.startswith("~") or (len(pattern) > 1 and pattern[1] == ":"):
        return f"{pattern!r} is absolute; patterns are relative to code.root"
    if ".." in pure.parts:
        return f"{pattern!r} leaves code.root ('..'); only files under code.root are shipped"
    return None


def _glob_pattern(value: str) -> str:
    problem = pattern_problem(value)
    if problem:
        raise ValueError(problem)
    parts = PurePosixPath(value).parts
    if not parts:
        raise ValueError(f"{value!r} matches nothing; use a pattern like **/*.py")
    if any("**" in p and p != "**" for p in parts):
        raise ValueError(f"{value!r}: '**' can only be a whole path component, as in **/*.py")
    return value


GlobPattern = Annotated[str, Field(min_length=1), AfterValidator(_glob_pattern)]


def spec_version(value: Any) -> Any:
    if type(value) is not int:  # `xrun: true` and `xrun: 1.0` equal 1 in Python
        raise ValueError(f"expected the integer 1, got {kind_of(value)} {short_repr(value)}")
    return value


def output_dir(path: Path) -> Path:
    """``output`` must be, or be creatable as, a directory."""
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                raise ValueError(f"{existing} is a file, not a directory; bundles are written below output")
            break
    return path
