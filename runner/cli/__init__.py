"""The ``xrun`` command line: the only package that prints, prompts, exits or imports typer/rich.

Each command parses its arguments, calls one core function and renders the result.

- :mod:`~runner.cli.app`: the typer app, consoles, exit codes (:func:`main`)
- :mod:`~runner.cli.spec_cmds`: ``run``, ``validate``, ``plan``
- :mod:`~runner.cli.bundle_cmds`: ``show``, ``ls``, ``verify``, ``reproduce``, ``diff``, ``pack``, ``report``
- :mod:`~runner.cli.env_cmds`: ``lock``, ``env create``, ``build``, ``manifests``, ``clean``, ``init``
- :mod:`~runner.cli.progress`: the live progress display and the result tables
"""

# Importing the command modules registers their commands, in the order `xrun --help` lists them.
# isort: off
from runner.cli import spec_cmds  # noqa: F401
from runner.cli import bundle_cmds  # noqa: F401
from runner.cli import env_cmds  # noqa: F401
# isort: on
from runner.cli.app import app, main

__all__ = ["app", "main"]
