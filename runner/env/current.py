"""The ``current`` environment: the interpreter running xrun, recorded, not rebuilt."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys

from runner.env.model import LockedEnv
from runner.env.runtime import normalize


def freeze() -> dict[str, str]:
    """name -> version of every distribution importable here (the first on sys.path wins)."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and normalize(name) not in found:
            found[normalize(name)] = dist.version
    return dict(sorted(found.items()))


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
