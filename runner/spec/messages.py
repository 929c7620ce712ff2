"""Spec error messages: pydantic errors translated to ``file:line key.path: what``.

The keys allowed at a place and the union fields are found by walking the model
tree from :class:`~runner.spec.models.Spec`, so a new model or field needs no list here.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, ValidationError

from runner import _yaml
from runner.errors import SpecError
from runner.spec.cluster import BACKENDS
from runner.spec.models import Spec
from runner.spec.values import kind_of, short_repr

_FRIENDLY = {
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "missing": "required key is missing",
    "tuple_type": "expected a list of two values",
    "path_type": "expected a path",
}


def spec_error(
    exc: ValidationError,
    raw: dict[str, Any],
    file: str,
    lines: dict[_yaml.KeyPath, int],
    overridden: dict[_yaml.KeyPath, str],
) -> SpecError:
    messages: list[tuple[int, str, int | None, str]] = []
    for err in exc.errors(include_url=False):
        path = _data_path(raw, err["loc"])
        line = _yaml.line_for(lines, path) or (1 if lines else None)
        what = _describe(err, raw, path)
        source = next((o for k, o in overridden.items() if path[: len(k)] == k), None)
        if source:
            what += f" (from --set {source})"
            line = lines.get(path)
        messages.append((line or 0, _yaml.dotted(path), line, what))
    messages.sort(key=lambda m: m[0])
    # Unknown-key errors of a wrong union member are noise next to the real one.
    first_line, first_path, line, what = messages[0]
    error = SpecError(what, file=file, line=line, path=first_path)
    if len(messages) > 1:
        rest = [
            SpecError(w, file=file, line=ln, path=p).message for _, p, ln, w in messages[1:10]
        ]
        more = f"\n  … and {len(messages) - 10} more" if len(messages) > 10 else ""
        error = SpecError(what, file=file, line=line, path=first_path)
        error.message = error.message + "\n" + "\n".join(rest) + more
        error.args = (error.message,)
    return error


def _leaves(annotation: Any) -> list[Any]:
    """The members of ``annotation`` once ``Annotated`` and unions are taken apart."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaves(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [leaf for arg in get_args(annotation) for leaf in _leaves(arg)]
    return [annotation]


def _is_discriminated(annotation: Any) -> bool:
    return get_origin(annotation) is Annotated and any(
        isinstance(m, Discriminator)
        for m in getattr(annotation, "__metadata__", ())
    )


@functools.cache
def _hints(model: type[BaseModel]) -> dict[str, Any]:
    hints = typing.get_type_hints(model, include_extras=True)
    return {name: hints[name] for name in model.model_fields}


def _step(annotation: Any, part: str | int) -> list[Any]:
    """The annotations one key (or list index) below ``annotation``."""
    found: list[Any] = []
    for leaf in _leaves(annotation):
        origin = get_origin(leaf)
        if isinstance(leaf, type) and issubclass(leaf, BaseModel):
            if isinstance(part, str) and part in leaf.model_fields:
                found.append(_hints(leaf)[part])
        elif origin is dict:
            found.append(get_args(leaf)[1])
        elif origin in (list, tuple) and isinstance(part, int) and get_args(leaf):
            found.append(get_args(leaf)[0])
    return found


def _annotations_at(path: _yaml.KeyPath) -> list[Any]:
    annotations: list[Any] = [Spec]
    for part in path:
        annotations = [a for ann in annotations for a in _step(ann, part)]
    return annotations


def _models_at(path: _yaml.KeyPath) -> list[type[BaseModel]]:
    return [
        leaf
        for ann in _annotations_at(path)
        for leaf in _leaves(ann)
        if isinstance(leaf, type) and issubclass(leaf, BaseModel)
    ]


def _is_union(path: list[str | int]) -> bool:
    """A discriminated union: pydantic puts its tag in the error location."""
    return any(_is_discriminated(a) for a in _annotations_at(tuple(path)))


@functools.cache
def _all_field_names() -> frozenset[str]:
    names: set[str] = set()
    todo: list[Any] = [Spec]
    seen: set[type[BaseModel]] = set()
    while todo:
        for leaf in _leaves(todo.pop()):
            if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                if leaf not in seen:
                    seen.add(leaf)
                    names.update(leaf.model_fields)
                    todo.extend(_hints(leaf).values())
            else:
                todo.extend(get_args(leaf))
    return frozenset(names)


def _data_path(raw: Any, loc: tuple[Any, ...]) -> _yaml.KeyPath:
    """Map a pydantic error location onto keys of the data, dropping union tags."""
    node = raw
    path: list[str | int] = []
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        i += 1
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(part, str) and part in _all_field_names():
            path.append(part)  # a missing key
            node = None
        else:
            continue
        if _is_union(path) and i < len(parts):
            skipped = parts[i]
            i += 1  # the union's tag
            if skipped == "dist" and i < len(parts):
                i += 1  # the distribution's tag
    return tuple(path)


def _allowed_keys(parent: _yaml.KeyPath) -> list[str]:
    keys: list[str] = []
    for model in _models_at(parent):
        keys += [k for k in model.model_fields if k not in keys]
    return keys


def _describe(err: Any, raw: Any, path: _yaml.KeyPath) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = _allowed_keys(path[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        msg = f"unknown key {key!r}"
        if hint:
            msg += f"; did you mean {hint[0]!r}?"
        elif allowed:
            msg += f" (allowed: {', '.join(allowed)})"
        return msg
    if kind == "backend":
        backend = _get(raw, path + ("backend",))
        hint = difflib.get_close_matches(str(backend), BACKENDS, n=1, cutoff=0.5)
        msg = f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})"
        return msg + (f"; did you mean {hint[0]!r}?" if hint else "")
    if kind == "one_of":
        value = _get(raw, path)
        if not isinstance(value, dict):
            return f"expected a mapping, got {kind_of(value)}"
        return str(err["msg"])
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"expected {expected}, got {err.get('input')!r}"
    if kind == "string_pattern_mismatch":
        return _pattern_message(path, err.get("input"))
    if kind in _FRIENDLY:
        msg = _FRIENDLY[kind]
        if kind != "missing" and "input" in err:
            msg += f", got {kind_of(err['input'])} {short_repr(err['input'])}"
        return msg
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else kind


def _pattern_message(path: _yaml.KeyPath, value: Any) -> str:
    last = path[-1] if path else ""
    if last == "name" and len(path) == 1:
        return f"{value!r} is not a valid name: use lowercase letters, digits and '-' (starting with a letter or digit)"
    if last in ("function", "dataset"):
        return f"{value!r} is not of the form module.path:function"
    if last == "estimator":
        return f"{value!r} is not an import path like sklearn.svm.SVC"
    if path[:1] == ("secrets",):
        return f"{value!r} is not an environment variable name"
    if path[:1] == ("cluster",) and last == "address":
        return f"{value!r} is not a scheduler address like tcp://host:8786"
    return f"{value!r} has an invalid format"


def _get(raw: Any, path: _yaml.KeyPath) -> Any:
    node = raw
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node
