"""The ``xrun`` command: ``runner._entry:main``.

A run on the local backend spends its first second importing: this process
imports the command line, validates the spec and plans, and the cluster's
processes import Dask (and a scikit-learn trial's modules). So ``xrun run SPEC``
(and ``xrun SPEC``) spawns the cluster first, from the spec's YAML as read
before it is validated (:func:`runner.cluster.local.start_ahead`), and the two
import side by side. Only for a plain command line, whose options cannot
change the cluster (no ``--backend``, ``--workers`` or ``--set``), and where
the run is likely to need it (``--no-cache``, or no run of the spec's name in
the cache yet). The run adopts the cluster where the validated spec asks for
the same one; otherwise, and when the command ends without a run, it is killed.
The spec is read with the same bounded reader as validation, and anything
unexpected here only means the cluster is spawned in its usual place.
"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

from runner import _yaml, config
from runner._safeio import MAX_SPEC_BYTES, read_bytes

# `xrun run`'s options that take a value, and those that change nothing the cluster depends on.
_VALUED = ("--output", "-o", "--build-arg")
_VALUED_INLINE = ("--output=", "--build-arg=")
_PLAIN = {"--no-cache", "--fail-fast", "--relock", "-q", "--quiet", "-v", "--verbose", "-vv"}
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # a spec name (runner.spec.models.NAME_RE, max_length)


def main() -> None:
    verbose = sum(2 if a == "-vv" else 1 for a in sys.argv[1:] if a in ("-v", "--verbose", "-vv"))
    config.quiet_dask(verbose)  # before a scheduler spawned ahead imports Dask
    config.quiet_dependency_warnings()  # before any thread starts
    # A Ctrl-C meanwhile waits until the command line is imported: an import it interrupts can leave the
    # import system's locks held. Then it ends the command as the command line ends it (exit 130), and a
    # cluster spawned ahead is killed at exit.
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda *_: pending.append(1))
    try:
        spawn_ahead(sys.argv[1:])
        from runner.cli import main as cli_main  # deferred: while the cluster spawned ahead starts
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    cli_main()


def spec_to_run(args: list[str]) -> tuple[str, bool] | None:
    """The spec of a plain ``xrun run SPEC`` (or ``xrun SPEC.yaml``) command
    line and whether it says ``--no-cache``; None for any other."""
    positional: list[str] = []
    no_cache = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _VALUED:
            i += 2
            continue
        if arg == "--no-cache":
            no_cache = True
        elif arg.startswith("-"):
            if arg not in _PLAIN and not arg.startswith(_VALUED_INLINE):
                return None  # --set, --workers, --backend, --help, or one xrun does not know
        else:
            positional.append(arg)
        i += 1
    if positional[:1] == ["run"]:
        positional = positional[1:]
    elif not (positional and positional[0].endswith((".yaml", ".yml"))):
        return None
    return (positional[0], no_cache) if len(positional) == 1 else None


def spawn_ahead(args: list[str]) -> None:
    found = spec_to_run(args)
    if found is None:
        return
    path, no_cache = found
    try:
        raw, _ = _yaml.load(_yaml.decode(read_bytes(Path(path), MAX_SPEC_BYTES, follow=True), path), path)
        if not no_cache:
            name = raw.get("name") if isinstance(raw, dict) else None
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                return
            from runner.cache import TrialCache  # deferred: only to look for a run (sqlite3)

            if next(TrialCache().run_records(name), None) is not None:  # a run may find its trials cached
                return
        from runner.cluster.local import start_ahead  # deferred: only for a run

        start_ahead(raw)
    except Exception:  # the command reads the spec again and reports whatever is wrong with it
        return
