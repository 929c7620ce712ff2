"""Report sections about single trials: all trials, the aggregated points, learning curves."""

from __future__ import annotations

from typing import Any

from runner.report import html as h
from runner.report.data import (
    Run,
    is_number,
    metric_names,
    params_text,
    trial_duration,
    worker_label,
)
from runner.report.sections import MAX_TRIAL_ROWS, _metric_cell, _param_cells, _source


def trials_section(run: Run) -> str:
    trials = run.trials
    total = run.scan.total
    if not trials:
        return '<p class="note">No trial finished.</p>'
    metrics = metric_names(run.scan.metrics_all, run.objective, limit=6)
    wide = len(run.params) > 6
    headers = ["trial", "status"] + (["params"] if wide else [p.name for p in run.params])
    numeric = [False, False] + ([False] if wide else [not p.categorical for p in run.params])
    headers += metrics + ["duration", "attempts", "worker", "source"]
    numeric += [True] * len(metrics) + [True, True, False, False]
    rows = []
    for t in trials[:MAX_TRIAL_ROWS]:
        status = t.get("failure_class") or t.get("status")
        d = trial_duration(t)
        rows.append(
            [h.text(t.get("id"), "mono"), h.Cell(h.badge(status), None)]
            + _param_cells(run, t, wide)
            + [_metric_cell(t, m) for m in metrics]
            + [
                h.Cell(h.esc(h.duration(d)), d, "num"),
                h.num(t.get("attempts")),
                h.text(worker_label(t.get("worker")), "mono"),
                _source(t),
            ]
        )
    more = (
        f' <span class="note">(the first {MAX_TRIAL_ROWS}; all are in results.csv)</span>'
        if total > MAX_TRIAL_ROWS
        else ""
    )
    return (
        f"<details><summary>Show all {total} trials (click a column to sort)</summary>{more}"
        f"{h.table(headers, rows, sortable=True, numeric=numeric)}</details>"
    )


TOP_POINTS = 20
CURVE_POINTS = 8  # points whose curves are drawn (the best by mean objective)
CURVE_LENGTH = 2000  # entries of one trial's history that are drawn
_CURVE_X = ("step", "epoch", "iteration", "iter")
_NOT_CURVES = {"time", *_CURVE_X}


def points_section(run: Run) -> str:
    """Each parameter point with its repeats aggregated: n, mean ± std, best mean first."""
    obj = run.objective
    top, n_points, repeats = run.top_points(TOP_POINTS)
    if not top:
        return '<p class="note">No trial finished.</p>'
    metrics = metric_names(run.scan.metrics_ok, obj, limit=4)
    wide = len(run.params) > 6
    headers: list[str] = ["#"] + (["params"] if wide else [p.name for p in run.params]) + ["n"]
    numeric = [True] + ([False] if wide else [not p.categorical for p in run.params]) + [True]
    headers += [f"{m} mean ± std" for m in metrics] + ["trials"]
    numeric += [True] * len(metrics) + [False]
    rows = []
    for i, p in enumerate(top, 1):
        row = [h.num(i)] + _param_cells(run, {"params": p.params}, wide)
        row.append(h.Cell(h.esc(f"{p.n}/{len(p.trials)}"), p.n, "num"))
        for m in metrics:
            mean, std = p.mean(m), p.std(m)
            text = "—" if mean is None else h.fmt(mean) + (f" ± {h.fmt(std)}" if std is not None else "")
            cell = h.Cell(h.esc(text), mean, "num")
            if obj is not None and m == obj.metric:
                cell.html = f"<b>{cell.html}</b>"
            row.append(cell)
        row.append(h.text(" ".join(p.trials[:6]) + (" …" if len(p.trials) > 6 else ""), "mono"))
        rows.append(row)
    shown = f"the best {len(top)} are shown" if n_points > len(top) else ""
    note = (
        f"{n_points} parameter points, up to {repeats} trials each (repeats with other seeds); "
        + (f"ranked by the mean of {obj.metric} ({obj.goal}). " if obj else "")
        + "n counts the successful trials; std is the sample standard deviation (— when n < 2)."
        + (f" Of the {n_points:,} points, {shown}; points.csv has them all." if shown else "")
    )
    out = f'<p class="note">{h.esc(note)}</p>' + h.table(headers, rows, cls="points-table", numeric=numeric)
    return out.replace("<tbody><tr>", '<tbody><tr class="best">', 1) if obj else out


def curves_section(run: Run) -> str:
    """``ctx.log`` history: one line per trial, repeats of a point overlaid in one colour."""
    from runner.report import timeplots  # deferred: imports matplotlib

    obj = run.objective
    chosen, _, _ = run.top_points(CURVE_POINTS, successful=True)
    histories = run.histories({t for p in chosen for t in p.ok})
    keys = sorted({k for hist in histories.values() for e in hist for k, v in e.items()
                   if k not in _NOT_CURVES and is_number(v)})  # fmt: skip
    if not keys:
        return '<p class="note">No trial logged intermediate values (<code>ctx.log(loss=…)</code> draws them here).</p>'
    metric = obj.metric if obj is not None and obj.metric in keys else keys[0]
    x_key = next((k for k in _CURVE_X if any(k in e for hist in histories.values() for e in hist)), None)
    groups = []
    for p in chosen:
        curves = []
        for tid in p.ok:
            curve = []
            for i, e in enumerate(histories.get(tid, [])[:CURVE_LENGTH]):
                y: Any = e.get(metric)
                x: Any = e.get(x_key) if x_key else i
                if is_number(y) and is_number(x):
                    curve.append((float(x), float(y)))
            if curve:
                curves.append(curve)
        if curves:
            label = params_text({"params": p.params}) or "(no parameters)"
            groups.append((label, curves))
    if not groups:
        return f'<p class="note">No trial logged {h.esc(metric)} with ctx.log.</p>'
    svg = timeplots.learning_curves(metric, groups, x_key or "ctx.log call")
    others = [k for k in keys if k != metric]
    note = (
        f"{metric} as logged with ctx.log by the trials of the {len(groups)} best point(s)"
        + (f"; also logged: {', '.join(others[:8])}" if others else "")
        + ". Every value is in trials.jsonl (history)."
    )
    return f'<p class="note">{h.esc(note)}</p>\n<figure class="plot-wide">{svg}</figure>'
