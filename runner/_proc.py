"""The one place xrun runs external commands.

Argument lists only (never a shell), both pipes read, and the tail of stderr in
the error so a user sees why a tool failed. Secrets never go into ``args``: pass
them through ``env``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.errors import InfraError, ProcessError

log = logging.getLogger(__name__)

TAIL_LINES = 30


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise InfraError(f"`{tool}` was not found on PATH; install it and try again")
    return path


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    input: str | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` and return the completed process (text mode).

    Raises :class:`ProcessError` with the stderr tail when the command fails and
    ``check`` is true, and :class:`InfraError` when it cannot be started.
    """
    argv = [os.fspath(a) for a in args]
    label = what or Path(argv[0]).name
    log.debug("running %s", argv)
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InfraError(f"`{argv[0]}` was not found; install it and try again") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProcessError(f"{label} did not finish within {timeout:g}s") from exc
    if check and proc.returncode != 0:
        out = tail(proc.stderr or proc.stdout or "")
        raise ProcessError(
            f"{label} failed (exit {proc.returncode}):\n{out}",
            returncode=proc.returncode,
            output=(proc.stderr or "") + (proc.stdout or ""),
        )
    return proc
