"""Worker-side trial execution.

This package is shipped to workers as source by :mod:`runner._plugin` and
imported there as the package ``_xrun_worker``: workers run in the spec's
environment, which has Dask but not xrun. Its modules therefore import only the
standard library at module level (scikit-learn and psutil are imported when a
trial needs them), and one another only by relative imports.

Rooms: ``trial`` runs trials and scrubs their results; ``context`` is the
``ctx`` a trial receives and its verified data copies; ``guard`` captures logs
and stops trials past their timeout or memory; ``sklearn_trial`` runs
zero-code scikit-learn trials; ``probe`` reports the worker's versions and
imports a trial before the sweep; ``_base`` holds limits and exceptions.
"""

from __future__ import annotations

from ._base import EVENT_TOPIC, DataChanged, TrialOutOfMemory, TrialTimeout
from .context import DataInputs, TrialContext, verified_copy
from .probe import check_trial, imported_distributions, worker_info
from .trial import MASK, SECRETS, STREAM_LIMIT, run_batch, run_trial, scrub, stop

__all__ = [
    "EVENT_TOPIC", "MASK", "SECRETS", "STREAM_LIMIT", "DataChanged", "DataInputs", "TrialContext",
    "TrialOutOfMemory", "TrialTimeout", "check_trial", "imported_distributions", "run_batch", "run_trial",
    "scrub", "stop", "verified_copy", "worker_info",
]
