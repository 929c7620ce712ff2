"""Submitting trials to Dask and recording what comes back.

* Streaming: at most ``max_in_flight`` Dask tasks (a trial, or a batch of short
  trials) are submitted at once, so a sweep of 100,000 trials never holds
  100,000 futures.
* Failure classes: ``error`` (the trial raised; retried up to ``trial.retries``),
  ``timeout`` (stopped in its thread by the worker, or by restarting the worker
  when stuck in C code), ``oom`` (neared the worker's memory limit, or its
  nanny killed the worker for its memory), ``worker-lost`` (its worker died each
  of ``LOST_LIMIT + 1`` times it ran). Only ``error`` counts against
  ``trial.retries``: the other classes are properties of the trial.
* A lost worker re-runs only what it was running: a trial that was running is
  run again (alone); trials of a batch that had finished were streamed to the
  driver as they finished and are kept (those shorter than a few milliseconds
  in groups: the last few milliseconds' may run again); those not started yet
  run again without counting an attempt.
* Every finished trial goes to the cache first, then to the bundle journal, and
  only then counts as done: a killed driver loses nothing it reported.
* ``stop`` (first Ctrl-C): no trial starts after it (workers are told to skip
  the run's queued tasks); running trials finish and are recorded. A
  ``KeyboardInterrupt`` (second Ctrl-C) cancels the rest (nothing is recorded
  for a cancelled trial: it is ``not_run``, and a re-run runs it).

Rooms: ``executor`` (the :class:`Executor` and its run loop), ``model`` (options,
events, outcome), ``batching``
(trials per Dask task), ``monitor`` (stuck trials, a workerless cluster, and
functions shipped by value to workers without xrun).
"""

from __future__ import annotations

from .executor import LOST_LIMIT, MEMORY_TOPIC, TRIAL_PREFIX, Executor
from .model import Event, Options, Outcome
from .monitor import HARD_TIMEOUT_GRACE, shipped

__all__ = ["HARD_TIMEOUT_GRACE", "LOST_LIMIT", "MEMORY_TOPIC", "TRIAL_PREFIX", "Event", "Executor", "Options", "Outcome",
           "shipped"]
