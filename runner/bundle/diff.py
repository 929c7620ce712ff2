"""``xrun diff A B``: what differs between two bundles."""

from __future__ import annotations

import statistics
from typing import Any

from runner.bundle.read import Bundle
from runner.plan import diff_files, diff_versions


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = value
    return out


def diff_bundles(a: Bundle, b: Bundle) -> dict[str, Any]:
    env_a, env_b = a.json("env/env.json") or {}, b.json("env/env.json") or {}
    packages = diff_versions(_obj(env_a.get("packages")), _obj(env_b.get("packages")))
    code = diff_files(a.json("code/files.json") or {}, b.json("code/files.json") or {})
    data_a, data_b = a.json("data.json") or {}, b.json("data.json") or {}
    data = []
    for name in sorted(set(data_a) | set(data_b)):
        ha, hb = _obj(data_a.get(name)).get("sha256"), _obj(data_b.get(name)).get("sha256")
        if ha != hb:
            data.append(f"{name}: {str(ha)[:12] if ha else 'absent'} → {str(hb)[:12] if hb else 'absent'}")
    spec_a, spec_b = a.json("spec.resolved.json") or {}, b.json("spec.resolved.json") or {}
    sweep = []
    fa, fb = _flatten(spec_a.get("sweep", {})), _flatten(spec_b.get("sweep", {}))
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            sweep.append(f"sweep.{key}: {fa.get(key)!r} → {fb.get(key)!r}")
    ta, tb = _flatten(spec_a.get("trial", {})), _flatten(spec_b.get("trial", {}))
    for key in sorted(set(ta) | set(tb)):
        if ta.get(key) != tb.get(key):
            sweep.append(f"trial.{key}: {ta.get(key)!r} → {tb.get(key)!r}")
    return {
        "a": a.meta.get("run_id"),
        "b": b.meta.get("run_id"),
        "environment": {
            "kind": [env_a.get("kind"), env_b.get("kind")],
            "lock_hash": [env_a.get("lock_hash"), env_b.get("lock_hash")],
            "packages": packages,
        },
        "code": code,
        "data": data,
        "sweep": sweep,
        "metrics": _metrics(a, b),
    }


def _metrics(a: Bundle, b: Bundle) -> list[dict[str, Any]]:
    """Per metric: mean and best over ok trials, side by side."""
    rows = []
    # bundles are not trusted: records whose metrics are not a mapping count as none
    ra = [{**r, "metrics": _obj(r.get("metrics"))} for r in a.trials if r.get("status") == "ok"]
    rb = [{**r, "metrics": _obj(r.get("metrics"))} for r in b.trials if r.get("status") == "ok"]
    names = sorted({m for r in ra + rb for m in r["metrics"]})
    goal = _obj(a.meta.get("best")).get("goal") or "maximize"
    for name in names:
        va = [r["metrics"][name] for r in ra if isinstance(r["metrics"].get(name), (int, float))]
        vb = [r["metrics"][name] for r in rb if isinstance(r["metrics"].get(name), (int, float))]
        pick = max if goal == "maximize" else min
        rows.append({
            "metric": name,
            "a_mean": statistics.fmean(va) if va else None,
            "b_mean": statistics.fmean(vb) if vb else None,
            "a_best": pick(va) if va else None,
            "b_best": pick(vb) if vb else None,
            "a_n": len(va),
            "b_n": len(vb),
        })  # fmt: skip
    return rows
