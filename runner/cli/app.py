"""The ``xrun`` typer app, its consoles and shared options, and :func:`main`.

The commands are in ``spec_cmds``, ``bundle_cmds`` and ``env_cmds`` (registered
when :mod:`runner.cli` is imported). Exit codes (DESIGN §3): 0 success, 1 the
work ran but failed, 2 bad usage or spec, 3 infrastructure.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from runner import config
from runner._display import clean
from runner.errors import UsageError, XrunError

app = typer.Typer(
    name="xrun",
    help="Declarative, reproducible experiment runner. `xrun SPEC` is `xrun run SPEC`.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
env_app = typer.Typer(help="Locked environments.", no_args_is_help=True)
app.add_typer(env_app, name="env")

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
_state: dict[str, Any] = {"quiet": False, "verbose": 0}

SpecArg = typer.Argument(..., help="the spec file (YAML)", show_default=False)
SetOpt = typer.Option([], "--set", help="override a spec value: KEY.PATH=VALUE (YAML-typed); repeatable")


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the final result"),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more detail (-vv: debug logs)"),
) -> None:
    _state["quiet"], _state["verbose"] = quiet, verbose
    config.quiet_dask(verbose)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("distributed", "tornado", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _say(text: str) -> None:
    if not _state["quiet"]:
        err.print(text)


def _load(spec: Path, overrides: list[str], backend: str | None = None, workers: int | None = None) -> Any:
    from runner.spec import load_spec  # deferred: imports pydantic

    sets = list(overrides)
    if backend:
        sets.append(f"cluster.backend={backend}")
    if workers is not None:
        sets.append(f"cluster.workers={workers}")
    loaded = load_spec(spec, sets)
    for warning in loaded.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    return loaded


def _kv(items: list[str], flag: str) -> dict[str, str]:
    outd = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        outd[k] = v
    return outd


# ------------------------------------------------------------------ run


COMMANDS = {"init", "run", "validate", "plan", "show", "ls", "verify", "lock", "env", "build", "manifests",
            "reproduce", "diff", "pack", "report", "clean", "--help", "-h", "--install-completion",
            "--show-completion"}  # fmt: skip


GLOBAL_FLAGS = {"-q", "--quiet", "-v", "--verbose", "-vv"}


def ignore_sigint_while_exiting() -> None:
    """Exit 130 is decided and the bundle sealed: a further Ctrl-C changes
    nothing. Python restores the default SIGINT action while it shuts down,
    so that Ctrl-C would kill xrun by signal instead of exit 130."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # -q/-v work anywhere on the line, as in pytest and uv.
    flags = [a for a in args if a in GLOBAL_FLAGS]
    args = flags + [a for a in args if a not in GLOBAL_FLAGS]
    # `xrun SPEC` is `xrun run SPEC`: the first argument that is not an option decides.
    first = next((a for a in args if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS:
        i = args.index(first)
        args = [*args[:i], "run", *args[i:]]
    try:
        # click reports usage errors itself (exit 2); our errors come out here.
        app(args=args, prog_name="xrun", standalone_mode=True)
    except XrunError as exc:
        if config.debug():
            raise

        err.print(f"error: {clean(exc.message)}", markup=False)  # messages quote bundle contents
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        ignore_sigint_while_exiting()
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # a bug: say so, without a traceback unless asked
        if config.debug():
            raise

        err.print(f"internal error: {type(exc).__name__}: {clean(str(exc))} (set XRUN_DEBUG=1 for the traceback)", markup=False)
        sys.exit(1)
    finally:
        if argv is None:  # the process's own command line: the process ends now
            # Whatever the command wrote is written and closed. The interpreter's
            # last full garbage collection at exit walks every object of every
            # module imported (Dask, matplotlib, pydantic): 0.2-1 s after the
            # bundle was sealed. Frozen objects are left to the process's end.
            gc.freeze()

