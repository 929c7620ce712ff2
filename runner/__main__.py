"""``python -m runner``: the ``xrun`` command itself (``runner._entry``)."""

from runner._entry import main

main()
