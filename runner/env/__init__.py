"""Locked environments: conda (conda-lock v1 files solved with py-rattler), pip
(uv-compiled requirements with hashes) or the current interpreter.

Everything downstream (trial keys, images, workers) sees a :class:`LockedEnv`::

    locked = load_env(spec.environment)          # fresh lock, or EnvFileError
    python = create_env(locked)                  # <cache>/envs/<hash16>/bin/python
"""

from __future__ import annotations

from runner.env.install import create_env, env_prefix
from runner.env.lock import check_lock, env_kind, load_env, lock_env, lock_path_for, pinned
from runner.env.model import EnvKind, LockedEnv
from runner.env.runtime import driver_mismatch, worker_packages_mismatch

__all__ = [
    "EnvKind",
    "LockedEnv",
    "check_lock",
    "create_env",
    "driver_mismatch",
    "env_kind",
    "env_prefix",
    "load_env",
    "lock_env",
    "lock_path_for",
    "pinned",
    "worker_packages_mismatch",
]
