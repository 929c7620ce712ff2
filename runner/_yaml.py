"""Safe YAML loading that remembers where every key came from.

PyYAML's composer gives nodes with marks; we construct plain Python values from
them ourselves so that (a) each key path maps to its line, (b) duplicate keys
are errors instead of silent overwrites, and (c) alias expansion is bounded.

The document's own values are bounded by its size (``MAX_BYTES``): a long
list written out in full is fine. Only values copied by aliases (``*name``,
``<<: *name``) count against ``MAX_ALIAS_VALUES``, so an "alias bomb" stops
early instead of eating memory, whatever the size of the legitimate parts.
"""

from __future__ import annotations

from typing import Any

import yaml

from runner.errors import SpecError

MAX_BYTES = 2 * 1024 * 1024
MAX_ALIAS_VALUES = 100_000
MAX_DEPTH = 64

KeyPath = tuple[str | int, ...]


class _Budget:
    def __init__(self) -> None:
        self.aliased = 0  # values built again because an alias repeats them
        self.seen: set[int] = set()  # collection nodes built once already


def decode(data: bytes, file: str) -> str:
    """Bytes → text, with the line of the first invalid byte in the error."""
    if len(data) > MAX_BYTES:
        raise SpecError(
            f"file is {len(data):,} bytes; specs are limited to {MAX_BYTES:,} bytes", file=file
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
            file=file,
            line=line,
        ) from None


def load(text: str, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse one YAML document; return (value, {key path: 1-based line})."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise SpecError(
            f"invalid YAML: character #x{exc.character:04x} is not allowed in YAML", file=file, line=line
        ) from None
    try:
        node = loader.get_single_node()
        lines: dict[KeyPath, int] = {}
        if node is None:
            return None, lines
        value = _build(loader, node, (), lines, _Budget(), 0, file, False)
        return value, lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at: int | None = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise SpecError(f"invalid YAML: {problem}", file=file, line=at) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise SpecError(f"invalid YAML: character #x{exc.character:04x} is not allowed in YAML", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:
        raise SpecError("document nests too deeply", file=file) from None
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    lines: dict[KeyPath, int],
    budget: _Budget,
    depth: int,
    file: str,
    aliased: bool,
) -> Any:
    if isinstance(node, yaml.CollectionNode):
        # The composer hands out the anchored node itself for every alias: a
        # node met twice is a copy, and so is everything below it.
        aliased = aliased or id(node) in budget.seen
        budget.seen.add(id(node))
    if aliased:
        budget.aliased += 1
        if budget.aliased > MAX_ALIAS_VALUES:
            raise SpecError(
                f"aliases expand to more than {MAX_ALIAS_VALUES:,} values (an alias bomb?)",
                file=file,
                line=node.start_mark.line + 1,
            )
    if depth > MAX_DEPTH:
        raise SpecError(
            f"document nests deeper than {MAX_DEPTH} levels",
            file=file,
            line=node.start_mark.line + 1,
        )
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(loader, key_node, path, {}, budget, depth + 1, file, aliased)
            if isinstance(key, (list, dict)):
                raise SpecError(
                    "mapping keys must be plain values",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    path=_dotted(path),
                )
            if not isinstance(key, str):
                key = str(key)
            sub = (*path, key)
            if key in out:
                raise SpecError(
                    f"duplicate key {key!r}",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    path=_dotted(sub),
                )
            lines[sub] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, sub, lines, budget, depth + 1, file, aliased)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            sub = (*path, i)
            lines[sub] = item.start_mark.line + 1
            items.append(_build(loader, item, sub, lines, budget, depth + 1, file, aliased))
        return items
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:  # a 5,000-digit integer, a 13th month
        kind = str(node.tag).rsplit(":", 1)[-1]
        what = (
            f"integer {_excerpt(node.value)} is too large"
            if kind == "int"
            else f"invalid {kind} {_excerpt(node.value)} ({exc}); quote it to make it a string"
        )
        raise SpecError(what, file=file, line=node.start_mark.line + 1) from None


def _excerpt(text: Any) -> str:
    text = str(text)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


dotted = _dotted


def line_for(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """Line of ``path``, or of its nearest ancestor that exists in the file."""
    for n in range(len(path), 0, -1):
        line = lines.get(tuple(path[:n]))
        if line is not None:
            return line
    return None
