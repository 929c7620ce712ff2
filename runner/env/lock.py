"""Locking, checking and loading the environment a spec names."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

from runner.env import conda, pip
from runner.env.current import current_env
from runner.env.model import EnvKind, LockedEnv
from runner.env.runtime import driver_mismatch
from runner.errors import EnvFileError, XrunError

if TYPE_CHECKING:  # the models, for annotations only (pydantic is not needed to lock)
    from runner.spec.models import CondaEnv, CurrentEnv, PipEnv

EnvSpec = Union["CondaEnv", "PipEnv", "CurrentEnv"]  # a spec's ``environment``

log = logging.getLogger(__name__)


def env_kind(env_spec: EnvSpec) -> EnvKind:
    """``conda``, ``pip`` or ``current`` for a spec's ``environment`` model."""
    kind = getattr(env_spec, "kind", None)
    if kind in ("conda", "pip", "current"):
        return kind  # type: ignore[no-any-return]
    for name in ("conda", "pip"):
        if getattr(env_spec, name, None) is not None:
            return name  # type: ignore[return-value]
    if getattr(env_spec, "current", False):
        return "current"
    raise TypeError(f"not an environment spec: {env_spec!r}")


def _env_file(env_spec: EnvSpec, kind: str) -> Path:
    return Path(getattr(env_spec, kind)).absolute()


def _platforms(env_spec: EnvSpec) -> list[str]:
    return list(getattr(env_spec, "platforms", None) or ["linux-64"])


def lock_path_for(env_file: Path, kind: str) -> Path:
    """Where the lock of ``env_file`` lives: ``x.yml`` → ``x.conda-lock.yml``, ``x.in`` → ``x.lock``."""
    if kind == "conda":
        return conda.lock_path(Path(env_file))
    if kind == "pip":
        return pip.lock_path(Path(env_file))
    raise ValueError(f"{kind} environments have no lock file")


def lock_env(
    env_spec: EnvSpec,
    *,
    python_version: str | None = None,
    upgrade: bool = False,
    upgrade_packages: Sequence[str] = (),
) -> LockedEnv:
    """(Re)lock the environment and write its lock file beside the environment file.

    ``python_version`` (pip only; default: this interpreter's ``major.minor``) is
    the Python the lock is resolved for. Conda environments take Python from
    their environment.yml. ``current`` writes nothing. Versions an existing
    lock pins are kept while they satisfy the environment file, unless
    ``upgrade`` (all) or ``upgrade_packages`` (those named) release them.
    """
    kind = env_kind(env_spec)
    if kind == "current":
        return current_env()
    env_file = _env_file(env_spec, kind)
    if kind == "conda":
        if python_version:
            log.debug(
                "python_version=%s ignored: conda takes python from %s",
                python_version,
                env_file.name,
            )
        return conda.lock(env_file, _platforms(env_spec), upgrade=upgrade, upgrade_packages=upgrade_packages)
    return pip.lock(env_file, python_version, upgrade=upgrade, upgrade_packages=upgrade_packages)


def check_lock(env_spec: EnvSpec) -> tuple[bool, str]:
    """(fresh?, why): is the lock there and made from the environment file as it is now?"""
    kind = env_kind(env_spec)
    if kind == "current":
        return True, "the current interpreter is recorded, not locked"
    env_file = _env_file(env_spec, kind)
    if kind == "conda":
        return conda.check(env_file, _platforms(env_spec))
    return pip.check(env_file)


def pinned(env_spec: EnvSpec) -> dict[str, str]:
    """The versions the existing lock pins, fresh or stale (empty without a readable lock)."""
    kind = env_kind(env_spec)
    if kind == "current":
        return {}
    env_file = _env_file(env_spec, kind)
    try:
        locked = conda.read(env_file, _platforms(env_spec)) if kind == "conda" else pip.read(env_file)
    except XrunError:
        return {}
    return dict(locked.packages)


def load_env(env_spec: EnvSpec, *, relock: bool = False) -> LockedEnv:
    """The LockedEnv a run uses: the existing lock, which must be fresh.

    A missing or stale lock raises EnvFileError (exit 2) unless ``relock``, which
    locks again first.
    """
    kind = env_kind(env_spec)
    if kind == "current":
        return current_env()
    env_file = _env_file(env_spec, kind)
    fresh, why = check_lock(env_spec)
    if not fresh:
        if relock:
            log.info("relocking %s: %s", env_file.name, why)
            return lock_env(env_spec)
        raise EnvFileError(f"{why}; run `xrun lock SPEC` (or pass --relock)", file=str(env_file))
    locked = conda.read(env_file, _platforms(env_spec)) if kind == "conda" else pip.read(env_file)
    mismatch = driver_mismatch(locked)
    if mismatch:
        log.warning("%s: %s", locked.lock_file, mismatch)
    return locked
