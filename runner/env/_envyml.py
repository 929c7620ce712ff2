"""Checking an environment.yml before conda-lock reads it, so errors carry a line."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from runner.errors import EnvFileError

KNOWN_KEYS = (
    "name",
    "channels",
    "dependencies",
    "variables",
    "prefix",
    # conda-lock's extensions
    "platforms",
    "category",
    "pip-repositories",
    "allow-pypi-requests",
)


def validate(path: Path) -> None:
    """Raise EnvFileError(file, line) unless ``path`` is an environment.yml xrun can lock."""
    where = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise EnvFileError(f"cannot read the environment file: {exc.strerror}", file=where) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise EnvFileError(
            f"not valid YAML: {problem}", file=where, line=mark.line + 1 if mark else None
        ) from exc
    if root is None:
        raise EnvFileError("the environment file is empty", file=where)
    if not isinstance(root, yaml.MappingNode):
        raise EnvFileError(
            "expected a mapping with channels: and dependencies:", file=where, line=_line(root)
        )
    keys = {}
    for key, value in root.value:
        name = key.value if isinstance(key, yaml.ScalarNode) else None
        if name not in KNOWN_KEYS:
            hint = difflib.get_close_matches(str(name), KNOWN_KEYS, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise EnvFileError(f"unknown key {name!r}{extra}", file=where, line=_line(key))
        keys[name] = (key, value)
    if "pip-repositories" in keys:
        key, _ = keys["pip-repositories"]
        raise EnvFileError(
            "pip-repositories is not supported by xrun; use PyPI or a uv index configuration",
            file=where,
            line=_line(key),
        )
    if "channels" not in keys:
        raise EnvFileError(
            "no channels: list; add one, e.g. `channels: [conda-forge]`", file=where, line=1
        )
    channels = _strings(keys["channels"][1], "channels", where)
    if not channels:
        raise EnvFileError("channels: is empty", file=where, line=_line(keys["channels"][1]))
    if "dependencies" not in keys:
        raise EnvFileError("no dependencies: list", file=where, line=1)
    deps = keys["dependencies"][1]
    if not isinstance(deps, yaml.SequenceNode):
        raise EnvFileError("dependencies: expected a list", file=where, line=_line(deps))
    for item in deps.value:
        if isinstance(item, yaml.ScalarNode):
            _check_match_spec(item, where)
        elif isinstance(item, yaml.MappingNode) and [k.value for k, _ in item.value] == ["pip"]:
            _strings(item.value[0][1], "dependencies.pip", where)
        else:
            raise EnvFileError(
                "dependencies: expected a package spec or a `pip:` list",
                file=where,
                line=_line(item),
            )


def _strings(node: yaml.Node, what: str, where: str) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        raise EnvFileError(f"{what}: expected a list", file=where, line=_line(node))
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise EnvFileError(f"{what}: expected a string", file=where, line=_line(item))
    return [str(i.value) for i in node.value]


def _check_match_spec(node: yaml.ScalarNode, where: str) -> None:
    # deferred: py-rattler, only when solving or installing conda packages
    from rattler import MatchSpec

    try:
        MatchSpec(str(node.value))
    except Exception as exc:  # rattler raises its own InvalidMatchSpecError
        raise EnvFileError(
            f"invalid package spec {node.value!r}: {exc}", file=where, line=_line(node)
        ) from exc


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1
