"""The locked-environment value every other layer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

EnvKind = Literal["conda", "pip", "current"]


@dataclass(frozen=True)
class LockedEnv:
    """A pinned environment, as recorded in bundles and used to key trials."""

    kind: EnvKind
    lock_hash: str  # sha256 hex of what is pinned; keys trials, tags images, names prefixes
    packages: dict[str, str]  # normalized distribution name -> version, as pinned
    env_file: Path | None = None  # environment.yml / requirements.in (None for current)
    lock_file: Path | None = None  # *.conda-lock.yml / *.lock (None for current)
    added: tuple[str, ...] = ()  # packages xrun added for the worker runtime
    platforms: tuple[str, ...] = ()
    freeze: str = field(default="", repr=False)  # current: `name==version` lines
    python_version: str | None = None  # pip: the version the lock was resolved for
