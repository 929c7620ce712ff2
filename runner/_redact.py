"""Secret values never reach the bundle, the cache or the terminal.

:func:`scrub` replaces every occurrence of a secret value in a trial's result,
wherever a trial can put text: its log, error and traceback, ``ctx.log``
history (names and values), metric names, artifact names and contents. Each
worker scrubs a result before it leaves the worker (it may pass through a
shared scheduler's event log); the driver scrubs again what it records.
Output a trial's subprocesses write straight to the worker's file descriptors
is redacted on the worker (:mod:`runner._plugin`).

The code lives in :mod:`runner.worker`, which is shipped to workers that may
not have xrun installed and so may import only the standard library.
"""

from __future__ import annotations

from runner.worker.trial import MASK, scrub

__all__ = ["MASK", "scrub"]
