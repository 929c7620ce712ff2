"""The ``current`` environment: the interpreter running xrun, recorded, not rebuilt."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys

from runner.env.model import LockedEnv
from runner.env.runtime import normalize


def freeze(path: list[str] | None = None) -> dict[str, str]:
    """name -> version of every distribution importable here (the first on sys.path wins)."""
    found: dict[str, str] = {}
    dists = importlib.metadata.distributions() if path is None else importlib.metadata.distributions(path=path)
    for dist in dists:
        name, version = _name_version(dist)
        if name and normalize(name) not in found:
            found[normalize(name)] = version
    return dict(sorted(found.items()))


def _name_version(dist: importlib.metadata.Distribution) -> tuple[str | None, str]:
    """``Name`` and ``Version`` from the metadata's headers alone: ``dist.metadata``
    parses the whole file, long description included, as an e-mail message (four
    times slower over an environment, on the critical path of every run).
    The full parse when the headers do not plainly say both."""
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    name = version = None
    for line in text.split("\n\n", 1)[0].splitlines():
        if line.startswith("Name:") and name is None:
            name = line[5:].strip()
        elif line.startswith("Version:") and version is None:
            version = line[8:].strip()
    if name and version:
        return name, version
    return dist.metadata["Name"], dist.version


def current_env() -> LockedEnv:
    packages = freeze()
    text = "".join(sorted(f"{name}=={version}\n" for name, version in packages.items()))
    python = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    return LockedEnv(
        kind="current",
        lock_hash=hashlib.sha256(text.encode()).hexdigest(),
        packages=packages,
        freeze=text,
        python_version=python,
    )
