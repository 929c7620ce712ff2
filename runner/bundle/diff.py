"""``xrun diff A B``: what differs between two bundles."""

from __future__ import annotations

import statistics
from typing import Any

from runner.bundle.points import aggregate, rank
from runner.bundle.read import Bundle
from runner.objective import Objective, is_real, recorded_objective
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
        "infrastructure": _infrastructure(a, b),
        "metrics": _metrics(a, b),
    }


def _objective(x: Bundle) -> Objective | None:
    """(metric, goal) of a bundle: its best point's, else the declared objective,
    else its sklearn trial's first scorer."""
    return recorded_objective(x.meta.get("best"), x.json("spec.resolved.json"))


def _infrastructure(a: Bundle, b: Bundle) -> list[str]:
    """Backend, worker count and image: where the trials ran."""
    out = []
    ba, bb = a.meta.get("backend"), b.meta.get("backend")
    if ba != bb:
        out.append(f"backend: {ba} → {bb}")
    wa = _obj(_obj(a.json("spec.resolved.json")).get("cluster")).get("workers")
    wb = _obj(_obj(b.json("spec.resolved.json")).get("cluster")).get("workers")
    if wa != wb:
        out.append(f"cluster.workers: {wa} → {wb}")
    ia, ib = _obj(a.json("image.json")), _obj(b.json("image.json"))
    for key in ("image", "image_id", "base"):
        va, vb = ia.get(key), ib.get(key)
        if va != vb:
            out.append(f"image {key}: {va or 'none'} → {vb or 'none'}")
    return out


def _metrics(a: Bundle, b: Bundle) -> list[dict[str, Any]]:
    """Per metric: mean over ok trials side by side; for the objective, the best
    point's mean (repeats aggregated) by the objective's goal."""
    rows = []
    # bundles are not trusted: records whose metrics are not a mapping count as none
    ra = [{**r, "metrics": _obj(r.get("metrics"))} for r in a.trials if isinstance(r, dict) and r.get("status") == "ok"]
    rb = [{**r, "metrics": _obj(r.get("metrics"))} for r in b.trials if isinstance(r, dict) and r.get("status") == "ok"]
    names = sorted({m for r in ra + rb for m in r["metrics"]})
    objective = _objective(a) or _objective(b)
    pa, pb = aggregate(ra), aggregate(rb)
    for name in names:
        va = [r["metrics"][name] for r in ra if is_real(r["metrics"].get(name))]
        vb = [r["metrics"][name] for r in rb if is_real(r["metrics"].get(name))]
        row: dict[str, Any] = {
            "metric": name,
            "goal": None,
            "a_mean": statistics.fmean(va) if va else None,
            "b_mean": statistics.fmean(vb) if vb else None,
            "a_std": statistics.stdev(va) if len(va) > 1 else None,
            "b_std": statistics.stdev(vb) if len(vb) > 1 else None,
            "a_best": None,
            "b_best": None,
            "a_n": len(va),
            "b_n": len(vb),
        }
        if objective is not None and objective[0] == name:
            row["goal"] = objective[1]
            best_a, best_b = rank(pa, name, objective[1]), rank(pb, name, objective[1])
            row["a_best"] = best_a[0].mean(name) if best_a else None
            row["b_best"] = best_b[0].mean(name) if best_b else None
        rows.append(row)
    return rows
