"""Materializing a lock into a prefix, cached by lock hash.

``<cache>/envs/<lock_hash[:16]>`` is built in a temporary sibling directory and
renamed into place; a marker file written last says it is complete, so a
prefix without one is the leftover of an interrupted create and is rebuilt. A
file lock beside the prefix serializes concurrent creates of one environment.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from filelock import FileLock

from runner import _proc
from runner.config import cache_dir
from runner.env import _uv, conda, pip
from runner.env.model import LockedEnv
from runner.env.pip import driver_python
from runner.errors import EnvFileError, UsageError

log = logging.getLogger(__name__)

MARKER = ".xrun-env.json"


def env_prefix(locked: LockedEnv) -> Path:
    """Where :func:`create_env` puts ``locked`` unless told otherwise."""
    return cache_dir() / "envs" / locked.lock_hash[:16]


def python_in(prefix: Path, kind: str) -> Path:
    if sys.platform == "win32":
        return prefix / ("Scripts/python.exe" if kind == "pip" else "python.exe")
    return prefix / "bin" / "python"


def create_env(
    locked: LockedEnv, prefix: Path | None = None, *, platform: str | None = None
) -> Path:
    """Install ``locked`` (once) and return its python executable.

    ``prefix`` overrides the cache location. ``platform`` (conda only) selects the
    lock's platform to install; default: this machine's. A ``current``
    environment is the running interpreter and is returned as is.
    """
    if locked.kind == "current":
        return Path(sys.executable)
    if locked.lock_file is None or not locked.lock_file.exists():
        raise EnvFileError(
            "the environment is not locked; run `xrun lock SPEC`", file=str(locked.env_file or "")
        )
    if locked.kind == "conda":
        platform = platform or conda.current_platform()
    final = (Path(prefix) if prefix is not None else env_prefix(locked)).absolute()
    python = python_in(final, locked.kind)
    if _complete(final, locked):
        return python
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final.with_name(final.name + ".lock"))):
        if _complete(final, locked):
            return python
        _check_unchanged(locked)
        _clear_leftover(final, cached=prefix is None)
        log.info("creating the %s environment %s in %s", locked.kind, locked.lock_hash[:16], final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; an environment is shared like any install
        try:
            if locked.kind == "conda":
                assert platform is not None
                _check_has_python(locked, platform)
                conda.install(locked.lock_file, tmp, final, platform)
            else:
                _make_venv(locked, tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            if locked.kind == "conda":
                assert platform is not None
                _install_pip_entries(locked, final, platform)
            _write_marker(final, locked, platform)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
    return python


def _check_unchanged(locked: LockedEnv) -> None:
    """The lock file must still be what ``locked`` was read from: the prefix is named,
    and later found, by that hash."""
    if locked.env_file is None:
        return
    now = conda.read(locked.env_file) if locked.kind == "conda" else pip.read(locked.env_file)
    if now.lock_hash != locked.lock_hash:
        raise EnvFileError(
            "the lock changed after it was loaded; load the environment again",
            file=str(locked.lock_file),
        )


def _complete(prefix: Path, locked: LockedEnv) -> bool:
    marker = prefix / MARKER
    if not marker.exists():
        return False
    try:
        recorded = json.loads(marker.read_text()).get("lock_hash")
    except (OSError, ValueError):
        return False
    if recorded != locked.lock_hash:
        raise UsageError(
            f"{prefix} already holds another environment (lock {str(recorded)[:16]}); "
            "choose another --prefix"
        )
    return True


def _clear_leftover(prefix: Path, *, cached: bool) -> None:
    if not prefix.exists():
        return
    if cached:
        log.warning("removing the incomplete environment %s", prefix)
        shutil.rmtree(prefix)
    elif prefix.is_dir() and not any(prefix.iterdir()):
        prefix.rmdir()
    else:
        raise UsageError(
            f"{prefix} exists and is not an xrun environment; choose an empty or new --prefix"
        )


def _write_marker(prefix: Path, locked: LockedEnv, platform: str | None) -> None:
    data = {
        "lock_hash": locked.lock_hash,
        "kind": locked.kind,
        "platform": platform,
        "lock_file": str(locked.lock_file),
    }
    tmp = prefix / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, prefix / MARKER)


def _check_has_python(locked: LockedEnv, platform: str) -> None:
    assert locked.lock_file is not None
    from runner.env._condalock import read_lock  # deferred: imports conda-lock, an optional extra

    names = {
        e.name
        for e in read_lock(locked.lock_file).entries
        if e.platform == platform and e.manager == "conda"
    }
    if names and "python" not in names:
        raise EnvFileError(
            "the environment has no python, which workers need; add python "
            "to its dependencies and relock",
            file=str(locked.env_file),
        )


def _install_pip_entries(locked: LockedEnv, prefix: Path, platform: str) -> None:
    assert locked.lock_file is not None
    requirements = conda.pip_requirements(locked.lock_file, platform)
    if not requirements:
        return
    with tempfile.TemporaryDirectory(prefix="xrun-pip-") as tmp:
        reqs = Path(tmp) / "requirements.txt"
        reqs.write_text("".join(r + "\n" for r in requirements))
        _proc.run(
            [
                _uv.uv(),
                "pip",
                "install",
                "--python",
                python_in(prefix, "conda"),
                "--no-deps",
                "--require-hashes",
                "-r",
                reqs,
            ],
            what="uv pip install (pip: section)",
        )


def _make_venv(locked: LockedEnv, prefix: Path) -> None:
    assert locked.lock_file is not None
    version = locked.python_version or driver_python()
    interpreter = sys.executable if version == driver_python() else version
    uv = _uv.uv()
    _proc.run(
        [uv, "venv", "--relocatable", "--quiet", "--python", interpreter, prefix], what="uv venv"
    )
    _proc.run(
        [
            uv,
            "pip",
            "sync",
            "--python",
            python_in(prefix, "pip"),
            "--require-hashes",
            "--quiet",
            locked.lock_file,
        ],
        what="uv pip sync",
    )
