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

Sweep version 2 (this release) makes a trial's identity depend only on what the
spec means, never on the order its keys were written in: a grid is enumerated
and random values are drawn with parameter names in sorted order, and every
mapping in a point (the point itself, values that are mappings, ``points``
entries) has its keys sorted. Version 1 used the order of ``sweep.parameters``
as written; :func:`expand` keeps it so bundles written then still reproduce.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner._json import encoder
from runner.spec.check import (
    MAX_TRIALS as MAX_TRIALS,  # the sweep size limit is part of a valid spec
)
from runner.spec.check import count as count
from runner.spec.check import size_problem as size_problem
from runner.spec.models import IntRange, LogUniform, Spec, Sweep, Uniform

SWEEP_VERSION = 2  # recorded in bundle.json (sweep.version); absent means 1
SWEEP_VERSIONS = (1, 2)
KEY_VERSIONS = {1: "xrun-trial-key-v1", 2: "xrun-trial-key-v2"}
KEY_VERSION = KEY_VERSIONS[SWEEP_VERSION]


# json.dumps with these options builds an encoder on every call: this one is made once (runner._json).
_canonical = encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_json(value: Any) -> str:
    return _canonical(value)


def sha256_hex(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def derive_seed(master: int, params: Mapping[str, Any], repeat: int) -> int:
    digest = hashlib.sha256(
        f"xrun-seed-v1\0{master}\0{canonical_json(dict(params))}\0{repeat}".encode()
    ).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)  # one per trial: a million of them in a large sweep
class TrialPoint:
    """One trial before it runs: where it sits in the sweep and what it gets."""

    index: int
    params: dict[str, Any]
    seed: int
    repeat: int
    id: str = field(init=False, repr=False, compare=False)  # "t" and the index: read many times per trial

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", f"t{self.index:05d}")


def normalize(value: Any) -> Any:
    """``value`` with the keys of every mapping in it sorted (lists keep their order)."""
    if isinstance(value, Mapping):
        return {k: normalize(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def points(sweep: Sweep, version: int = SWEEP_VERSION) -> Iterator[dict[str, Any]]:
    """The sweep's parameter points, in a stable order (see the module docstring)."""
    if version not in SWEEP_VERSIONS:
        raise ValueError(f"unknown sweep version {version!r} (this xrun knows {SWEEP_VERSIONS})")
    names = sorted(sweep.parameters) if version >= 2 else list(sweep.parameters)
    shape = normalize if version >= 2 else (lambda p: p)
    if sweep.method == "list":
        yield from (shape(dict(p)) for p in sweep.points or [])
    elif sweep.method == "grid":
        values = [sweep.parameters[n] for n in names]
        for combo in itertools.product(*values):  # type: ignore[arg-type]
            yield shape(dict(zip(names, combo)))
    else:
        rng = random.Random(sweep.seed)
        for _ in range(sweep.samples or 0):
            yield shape({name: _draw(sweep.parameters[name], rng) for name in names})


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


_SCALARS = (str, int, float, bool, type(None))


def _normalize_fast(value: Any) -> Any:
    return value if type(value) in _SCALARS else normalize(value)


def _drawer(dist: Any) -> Callable[[float], Any]:
    """:func:`_draw` for one distribution, given its uniform draw (the same arithmetic)."""
    if isinstance(dist, list):
        n = len(dist)
        return lambda u: dist[min(int(u * n), n - 1)]
    if isinstance(dist, Uniform):
        lo, hi = dist.uniform
        return lambda u: lo + (hi - lo) * u
    if isinstance(dist, LogUniform):
        log_lo, log_hi = math.log(dist.loguniform[0]), math.log(dist.loguniform[1])
        return lambda u: math.exp(log_lo + (log_hi - log_lo) * u)
    if isinstance(dist, IntRange):
        ilo, ihi = sorted(dist.int)
        return lambda u: ilo + min(int(u * (ihi - ilo + 1)), ihi - ilo)
    raise TypeError(f"unknown distribution {dist!r}")


def _points_fast(sweep: Sweep, version: int) -> Iterator[dict[str, Any]]:
    """:func:`points`, with the per-point work of random draws and of sorting
    mappings done once per sweep (tests/test_properties.py holds it to :func:`points`)."""
    if sweep.method != "random" or version < 2:
        yield from points(sweep, version)
        return
    names = sorted(sweep.parameters)
    drawers = [(name, _drawer(sweep.parameters[name])) for name in names]
    rng = random.Random(sweep.seed)
    draw = rng.random
    for _ in range(sweep.samples or 0):
        yield {name: _normalize_fast(f(draw())) for name, f in drawers}  # names sorted: values may be mappings


def expand(sweep: Sweep, version: int = SWEEP_VERSION) -> Iterator[TrialPoint]:
    """Every trial of the sweep: each point × ``repeats`` derived seeds."""
    for point, _ in expand_json(sweep, version):
        yield point


def expand_json(sweep: Sweep, version: int = SWEEP_VERSION) -> Iterator[tuple[TrialPoint, str]]:
    """:func:`expand`, each trial with ``canonical_json`` of its params (what its
    seed and key hash), made once per point. Lazy: a sweep is never held whole."""
    seed_head = hashlib.sha256(f"xrun-seed-v1\0{sweep.seed}\0".encode())  # what every seed's digest starts with
    index = 0
    for params in _points_fast(sweep, version):
        text = canonical_json(params)
        for repeat in range(sweep.repeats):
            h = seed_head.copy()
            h.update(f"{text}\0{repeat}".encode())
            yield TrialPoint(index, params, int.from_bytes(h.digest()[:4], "big") & 0x7FFFFFFF, repeat), text
            index += 1


def trial_definition(spec: Spec) -> dict[str, Any]:
    """What a trial computes, independent of how it is scheduled (no timeout or retries).

    Without a holdout, an sklearn trial's definition has no holdout keys, so
    keys of results stored before holdouts existed stay valid."""
    definition = spec.trial.model_dump(mode="json", exclude={"timeout", "retries"})
    sk = definition.get("sklearn")
    if isinstance(sk, dict) and sk.get("holdout") is None:
        sk.pop("holdout", None)
        sk.pop("holdout_seed", None)
    return definition


def trial_key(
    *,
    params: Mapping[str, Any],
    seed: int,
    definition: Mapping[str, Any],
    code_hash: str,
    env_hash: str,
    data_hashes: Mapping[str, str],
    version: int = SWEEP_VERSION,
    inputs: Mapping[str, str] | None = None,
) -> str:
    """DESIGN §4: sha256 of canonical JSON of everything a result depends on.

    ``inputs`` (stage name -> sha256 of its outputs, e.g. ``prepare``) is part
    of the key only when there are any, so keys of runs without stages stay as they were."""
    doc: dict[str, Any] = {
        "v": KEY_VERSIONS[version],
        "params": dict(params),
        "seed": seed,
        "trial": dict(definition),
        "code": code_hash,
        "env": env_hash,
        "data": dict(data_hashes),
    }
    if inputs:
        doc["inputs"] = dict(inputs)
    return sha256_hex(canonical_json(doc))


class Keyer:
    """:func:`trial_key` for the many trials of one plan: everything but the
    params and the seed is the same for all of them, so the canonical JSON
    before the params is hashed once and its hasher copied for each trial.
    Keys are byte-identical to :func:`trial_key`'s (sorted keys: ``code``,
    ``data``, ``env``, ``inputs``, then ``params``, ``seed``, ``trial``, ``v``)."""

    def __init__(
        self,
        *,
        definition: Mapping[str, Any],
        code_hash: str,
        env_hash: str,
        data_hashes: Mapping[str, str],
        version: int = SWEEP_VERSION,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        head = f'{{"code":{canonical_json(code_hash)},"data":{canonical_json(dict(data_hashes))},"env":{canonical_json(env_hash)}'
        if inputs:
            head += f',"inputs":{canonical_json(dict(inputs))}'
        self._head = hashlib.sha256(f'{head},"params":'.encode())
        self._tail = f',"trial":{canonical_json(dict(definition))},"v":{canonical_json(KEY_VERSIONS[version])}}}'.encode()

    def key(self, params_json: str, seed: int) -> str:
        """The key of a trial, from ``canonical_json`` of its params and its seed."""
        h = self._head.copy()
        h.update(f'{params_json},"seed":{seed if type(seed) is int else canonical_json(seed)}'.encode())
        h.update(self._tail)
        return h.hexdigest()
