"""The ``xrun`` command line: the only package that prints, prompts or exits.

- :mod:`~runner.cli.app`: the typer app, consoles, exit codes (:func:`main`)
- :mod:`~runner.cli.progress`: the live progress display and the result tables
"""

from runner.cli.app import app, main

__all__ = ["app", "main"]
