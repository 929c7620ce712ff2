"""Loading a spec: read the file, parse YAML with line numbers, apply ``--set``
overrides, validate against the models, then run the checks across keys.

Every problem is reported as ``file:line key.path: what is wrong``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner import _yaml
from runner._safeio import MAX_SPEC_BYTES, UnsafePath, read_bytes
from runner.errors import SpecError
from runner.spec.check import check_semantics
from runner.spec.messages import spec_error
from runner.spec.models import SPEC_VERSION, LoadedSpec, Spec, display_path
from runner.spec.values import kind_of


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> LoadedSpec:
    """Read, parse and validate a spec file, applying ``--set key.path=value`` overrides."""
    path = Path(path)
    file = display_path(path.absolute())
    if path.is_dir():
        raise SpecError("is a directory, not a spec file", file=file)
    try:  # a FIFO or /dev/zero would block or never end
        data = read_bytes(path, MAX_SPEC_BYTES, follow=True)
    except FileNotFoundError:
        raise SpecError("spec file not found", file=file) from None
    except UnsafePath as exc:
        raise SpecError(f"cannot read spec: {str(exc).removeprefix(f'{path}: ')}", file=file) from None
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", file=file) from None
    text = _yaml.decode(data, file)
    return loads_spec(text, path.absolute(), overrides)


def loads_spec(text: str, path: Path, overrides: Iterable[str] = ()) -> LoadedSpec:
    """Validate spec ``text`` as if read from ``path`` (paths resolve beside it)."""
    file = display_path(path)
    raw, lines = _yaml.load(text, file)
    overrides = tuple(overrides)
    if raw is None:
        raise SpecError("the spec is empty; it needs at least `xrun: 1`, `name` and `trial`", file=file, line=1)
    if not isinstance(raw, dict):
        raise SpecError(
            f"the top level must be a mapping of keys, not a {kind_of(raw)}", file=file, line=1
        )
    overridden: dict[_yaml.KeyPath, str] = {}
    for item in overrides:
        key_path = apply_override(raw, item)
        overridden[key_path] = item
    return validate(raw, path, text=text, lines=lines, overrides=overrides, overridden=overridden)


def validate(
    raw: dict[str, Any],
    path: Path,
    *,
    text: str = "",
    lines: dict[_yaml.KeyPath, int] | None = None,
    overrides: tuple[str, ...] = (),
    overridden: dict[_yaml.KeyPath, str] | None = None,
) -> LoadedSpec:
    lines = lines or {}
    file = display_path(path)
    if "xrun" in raw and raw["xrun"] != SPEC_VERSION and isinstance(raw["xrun"], int):
        raise SpecError(
            f"spec format version {raw['xrun']} is not supported by this xrun (supports {SPEC_VERSION})",
            file=file,
            line=lines.get(("xrun",)),
            path="xrun",
        )
    try:
        spec = Spec.model_validate(raw, context={"base": path.parent})
    except ValidationError as exc:
        raise spec_error(exc, raw, file, lines, overridden or {}) from None
    except RecursionError:
        raise SpecError("spec nests too deeply", file=file) from None
    loaded = LoadedSpec(spec=spec, path=path, text=text, overrides=overrides, lines=lines)
    warnings = check_semantics(loaded)
    return LoadedSpec(
        spec=spec, path=path, text=text, overrides=overrides, lines=lines, warnings=tuple(warnings)
    )


# ---------------------------------------------------------------- overrides


def apply_override(raw: dict[str, Any], item: str) -> _yaml.KeyPath:
    """Apply ``a.b.c=value`` (value parsed as YAML) to ``raw`` in place."""
    if "=" not in item:
        raise SpecError(f"--set {item!r}: expected KEY.PATH=VALUE")
    key, _, value_text = item.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise SpecError(f"--set {item!r}: the key path is empty or has an empty part")
    try:
        value, _ = _yaml.load(value_text, f"--set {key}")
    except SpecError as exc:
        raise SpecError(f"--set {item!r}: value is not valid YAML ({exc.what})") from None
    node: Any = raw
    path: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        index: str | int = part
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"--set {item!r}: {_yaml.dotted(tuple(path))} has no item {part}")
            index = int(part)
        elif not isinstance(node, dict):
            raise SpecError(
                f"--set {item!r}: {_yaml.dotted(tuple(path))} is a {kind_of(node)}, not a mapping"
            )
        path.append(index)
        if last:
            node[index] = value
        else:
            if isinstance(node, dict) and (index not in node or node[index] is None):
                node[index] = {}
            node = node[index]
    return tuple(path)
