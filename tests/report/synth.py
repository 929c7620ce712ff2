"""Synthetic bundles for report tests: any number of trials, in milliseconds.

They carry the files the report reads (bundle.json, spec.resolved.json,
trials.jsonl, env/env.json, host.json, code/git.json, data.json) with the shapes
the real writer gives them, so large sweeps can be tested without running one.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

# The report's section anchors, in page order.
SECTIONS = (
    "run",
    "stages",
    "best",
    "points",
    "curves",
    "objective",
    "parallel",
    "timeline",
    "failures",
    "environment",
    "reproduction",
    "trials",
)

FAILURES = [
    ("error", "error", "FloatingPointError: loss diverged <script>alert('x')</script> & more"),
    ("timeout", "timeout", "trial exceeded its timeout of 3s"),
    ("oom", "oom", "trial ran out of memory (worker memory limit of 2048 MiB)"),
    ("worker-lost", "worker-lost", "the trial's worker died each time it ran it (KilledWorker)"),
]


def make_bundle(
    root: Path,
    n: int = 40,
    *,
    workers: int = 4,
    fail_every: int = 9,
    cached_every: int = 0,
    seed: int = 0,
    reproduce: dict[str, Any] | None = None,
) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "env").mkdir()
    (root / "code").mkdir()
    t0 = 1_795_000_000.0
    clock = [t0 + 0.2 * w for w in range(workers)]
    addrs = [f"tcp://10.0.0.{w + 1}:{40000 + w}" for w in range(workers)]
    best = None
    journal = open(root / "trials.jsonl", "w", encoding="utf-8")  # streamed: a million trials fit

    counts = {"ok": 0, "failed": 0, "cached": 0, "not_run": 0, "total": n}
    for i in range(n):
        params = {
            "lr": 10 ** rng.uniform(-4, -1),
            "opt": rng.choice(["adam", "sgd", "rmsprop"]),
            "depth": rng.randint(1, 9),
            "dropout": rng.uniform(0.0, 0.5),
        }
        w = min(range(workers), key=lambda k: clock[k])
        start = clock[w]
        dur = 0.5 + rng.random() * 2
        clock[w] = start + dur + 0.01
        rec: dict[str, Any] = {
            "id": f"t{i:05d}",
            "key": f"{i:064x}",
            "params": params,
            "seed": rng.randrange(2**31),
            "repeat": 0,
            "status": "ok",
            "metrics": {},
            "error": None,
            "traceback": None,
            "failure_class": None,
            "worker": addrs[w],
            "start": start,
            "end": start + dur,
            "attempts": 1,
            "cached": False,
            "history": [],
        }
        if fail_every and i % fail_every == fail_every - 1:
            status, cls, msg = FAILURES[(i // fail_every) % len(FAILURES)]
            rec.update(
                status=status,
                failure_class=cls,
                error=msg,
                attempts=2,
                traceback=f'Traceback (most recent call last):\n  File "x.py", line 1\n{msg}\n',
            )
            counts["failed"] += 1
        else:
            score = 1 - abs(math.log10(params["lr"]) + 2.5) / 3 - 0.01 * params["depth"]
            score += {"adam": 0.05, "sgd": 0.0, "rmsprop": 0.02}[params["opt"]] + rng.gauss(0, 0.01)
            rec["metrics"] = {"score": score, "loss": 1 - score}
            if cached_every and i % cached_every == 0:
                rec.update(cached=True, cached_from="synth-20260101T000000Z-abcdef")
                counts["cached"] += 1
            else:
                counts["ok"] += 1
            if best is None or score > best[1]:
                best = (rec["id"], score)
        journal.write(json.dumps(rec) + "\n")
    journal.close()
    status = "failed" if counts["failed"] else "ok"
    meta = {
        "bundle_version": 1,
        "run_id": root.name,
        "xrun_version": "0.1.0",
        "created": "2026-11-24T05:53:20+00:00",
        "status": status,
        "counts": counts,
        "backend": "local",
        "spec_name": "synth",
        "duration_seconds": max(clock) - t0,
        "best": {"trial": best[0], "metric": "score", "value": best[1], "goal": "maximize"}
        if best
        else None,
        "env": {"kind": "pip", "lock_hash": "ab" * 32},
        "code_hash": "cd" * 32,
        "failures": {},
        "sweep": {"method": "random", "seed": seed, "trials": n},
    }
    resolved = {
        "name": "synth",
        "description": "a synthetic sweep <i>for tests</i>",
        "trial": {"function": "experiments.synth:train", "timeout": 3.0, "retries": 1},
        "sweep": {
            "method": "random",
            "samples": n,
            "seed": seed,
            "repeats": 1,
            "objective": {"metric": "score", "goal": "maximize"},
            "parameters": {
                "lr": {"loguniform": [1e-4, 1e-1]},
                "opt": ["adam", "sgd", "rmsprop"],
                "depth": {"int": [1, 9]},
                "dropout": {"uniform": [0.0, 0.5]},
            },
        },
        "_overrides": [],
    }
    packages = {"xrun": "0.1.0", "dask": "2026.8.0", "distributed": "2026.8.0", "numpy": "2.4.6"}
    host = {
        "backend": "local",
        "scheduler": "tcp://10.0.0.1:8786",
        "driver": {
            "hostname": "driver",
            "python": "3.11.7",
            "platform": "Linux",
            "cpus": 8,
            "packages": packages,
        },
        "workers": {
            a: {"hostname": "node", "python": "3.11.7", "platform": "Linux", "packages": packages}
            for a in addrs
        },
    }
    env = {
        "kind": "pip",
        "lock_hash": "ab" * 32,
        "env_file": "synth.in",
        "lock_file": "synth.lock",
        "packages": packages,
        "added": [],
        "platforms": [],
    }
    _dump(root / "bundle.json", meta)
    _dump(root / "spec.resolved.json", resolved)
    _dump(root / "host.json", host)
    _dump(root / "env" / "env.json", env)
    _dump(root / "code" / "git.json", {"commit": "0" * 40, "branch": "main", "dirty": False})
    _dump(
        root / "data.json",
        {"train": {"path": "/data/train.csv", "sha256": "ef" * 32, "size": 1234}},
    )
    if reproduce is not None:
        _dump(root / "reproduce.json", reproduce)
    return root


def _dump(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
