"""Environment variables and where xrun keeps things, defined once.

Precedence everywhere: command-line flag > environment variable > spec > default.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

ENV_CACHE_DIR = "XRUN_CACHE_DIR"
ENV_DEBUG = "XRUN_DEBUG"
ENV_CONNECT_TIMEOUT = "XRUN_CONNECT_TIMEOUT"  # seconds to reach a scheduler
ENV_ALLOW_OUTSIDE = "XRUN_ALLOW_OUTSIDE_PATHS"  # 1: spec paths may leave the project tree silently


def allow_outside_paths() -> bool:
    return os.environ.get(ENV_ALLOW_OUTSIDE, "") not in ("", "0", "false", "no")


def connect_timeout() -> float:
    try:
        return float(os.environ.get(ENV_CONNECT_TIMEOUT, "30"))
    except ValueError:
        return 30.0


def debug() -> bool:
    return os.environ.get(ENV_DEBUG, "") not in ("", "0", "false", "no")


def quiet_dask(verbose: int) -> None:
    """Below ``-vv``, Dask's own loggers print nothing (the driver's client and a
    scheduler running in the driver alike). Dask reads this as ``distributed`` is
    first imported, which may be before the command line is parsed (a scheduler
    spawned ahead: runner._entry); a user's own setting wins."""
    if verbose < 2:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")


def quiet_dependency_warnings() -> None:
    """Silence what a dependency silences for itself at import, for good:
    ``requests`` turns off urllib3's warning that SOCKS proxies need PySocks
    with a filter added as it is imported. An import in another thread (the
    driver imports what sealing needs while trials run) can add that filter
    inside a ``warnings.catch_warnings()`` block of this one, which drops it on
    exit, and the warning then reached the terminal. Called before any thread starts."""
    warnings.filterwarnings("ignore", message="SOCKS support in urllib3", module=r"urllib3\.contrib\.socks")


def cache_dir() -> Path:
    """Root of xrun's caches: trial results, environments, image metadata."""
    value = os.environ.get(ENV_CACHE_DIR)
    if value:
        return Path(value).expanduser().resolve()
    from platformdirs import user_cache_dir  # deferred: only when XRUN_CACHE_DIR is not set

    return Path(user_cache_dir("xrun", appauthor=False))
