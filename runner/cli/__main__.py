"""``python -m runner.cli``: the same as the ``xrun`` command."""

from runner.cli import main

main()
