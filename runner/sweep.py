"""Expanding a sweep into trials; per-trial seeds; trial keys.

Seeds and keys are machine-independent and stable across Python versions:

* ``canonical_json(x)`` is JSON with sorted keys, no whitespace, ASCII only, and
  floats written by ``repr`` (shortest round-trip form).
* A point's seed for repeat ``r`` is the first 4 bytes (big-endian) of
  ``sha256("xrun-seed-v1\\0" + str(master_seed) + "\\0" + canonical_json(params) + "\\0" + str(r))``
  masked to 31 bits, so it fits every library's seed argument. Seeds depend on
  the point, not its position, so widening a grid keeps the seeds of old points.
* ``random`` sampling draws from ``random.Random(master_seed).random()`` only,
  whose sequence Python guarantees across versions and platforms; choices,
  ``int`` and the continuous distributions are computed from those floats here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner.spec import IntRange, LogUniform, Spec, Sweep, Uniform

KEY_VERSION = "xrun-trial-key-v1"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def derive_seed(master: int, params: Mapping[str, Any], repeat: int) -> int:
    digest = hashlib.sha256(
        f"xrun-seed-v1\0{master}\0{canonical_json(dict(params))}\0{repeat}".encode()
    ).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class TrialPoint:
    """One trial before it runs: where it sits in the sweep and what it gets."""

    index: int
    params: dict[str, Any]
    seed: int
    repeat: int

    @property
    def id(self) -> str:
        return f"t{self.index:05d}"


def points(sweep: Sweep) -> Iterator[dict[str, Any]]:
    """The sweep's parameter points, in a stable order."""
    if sweep.method == "list":
        yield from (dict(p) for p in sweep.points or [])
    elif sweep.method == "grid":
        names = list(sweep.parameters)
        values = [sweep.parameters[n] for n in names]
        for combo in itertools.product(*values):  # type: ignore[arg-type]
            yield dict(zip(names, combo))
    else:
        rng = random.Random(sweep.seed)
        for _ in range(sweep.samples or 0):
            yield {name: _draw(dist, rng) for name, dist in sweep.parameters.items()}


def _draw(dist: Any, rng: random.Random) -> Any:
    u = rng.random()
    if isinstance(dist, list):
        return dist[min(int(u * len(dist)), len(dist) - 1)]
    if isinstance(dist, Uniform):
        lo, hi = dist.uniform
        return lo + (hi - lo) * u
    if isinstance(dist, LogUniform):
        lo, hi = dist.loguniform
        return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
    if isinstance(dist, IntRange):
        lo, hi = sorted(dist.int)
        return lo + min(int(u * (hi - lo + 1)), hi - lo)
    raise TypeError(f"unknown distribution {dist!r}")


def expand(sweep: Sweep) -> Iterator[TrialPoint]:
    """Every trial of the sweep: each point × ``repeats`` derived seeds."""
    index = 0
    for params in points(sweep):
        for repeat in range(sweep.repeats):
            yield TrialPoint(index, params, derive_seed(sweep.seed, params, repeat), repeat)
            index += 1


def count(sweep: Sweep) -> int:
    if sweep.method == "list":
        n = len(sweep.points or [])
    elif sweep.method == "grid":
        n = math.prod(len(v) for v in sweep.parameters.values())  # type: ignore[arg-type,misc]
    else:
        n = sweep.samples or 0
    return n * sweep.repeats


MAX_TRIALS = 1_000_000  # every trial is planned in memory and journaled; beyond this, split the sweep


def size_problem(sweep: Sweep) -> tuple[str, str] | None:
    """(sweep key, message) when the sweep has more than :data:`MAX_TRIALS` trials.

    Computed from the sweep's sizes, without expanding it (a 10^12-point grid
    is refused at once instead of filling memory).
    """
    n = count(sweep)
    if n <= MAX_TRIALS:
        return None
    key = {"grid": "parameters", "random": "samples", "list": "points"}[sweep.method]
    if n // max(sweep.repeats, 1) <= MAX_TRIALS:
        key = "repeats"
    return key, f"the sweep has {n:,} trials (more than {MAX_TRIALS:,}); make it smaller or split it into several runs"


def trial_definition(spec: Spec) -> dict[str, Any]:
    """What a trial computes, independent of how it is scheduled (no timeout or retries)."""
    return spec.trial.model_dump(mode="json", exclude={"timeout", "retries"})


def trial_key(
    *,
    params: Mapping[str, Any],
    seed: int,
    definition: Mapping[str, Any],
    code_hash: str,
    env_hash: str,
    data_hashes: Mapping[str, str],
) -> str:
    """DESIGN §4: sha256 of canonical JSON of everything a result depends on."""
    return sha256_hex(
        canonical_json(
            {
                "v": KEY_VERSION,
                "params": dict(params),
                "seed": seed,
                "trial": dict(definition),
                "code": code_hash,
                "env": env_hash,
                "data": dict(data_hashes),
            }
        )
    )
