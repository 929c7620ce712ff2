"""Report sections about the sweep's results: the run, best trials, objective, parallel coordinates, timeline."""

from __future__ import annotations

import re
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
from runner.report.plots import Param
from runner.report.scan import MAX_WORKERS, RESTARTED

TOP_TRIALS = 10
MAX_PARAM_PLOTS = 16
MAX_PARALLEL_PARAMS = 12
MAX_TRIAL_ROWS = 5000
PLOT_TRIALS = 5000  # trials drawn per scatter or parallel-coordinates plot (the best and an even sample)


def _sampled_note(drawn: int, total: int) -> str:
    return (f" {drawn:,} of the {total:,} trials are drawn: the best {PLOT_TRIALS // 10:,} and a random sample"
            " (the same for the same trials)." if drawn < total else "")  # fmt: skip


def run_section(run: Run) -> str:
    m = run.meta
    counts = m.get("counts") or {}
    total = counts.get("total", run.scan.total)
    tiles = [
        ("status", h.badge(m.get("status")), ""),
        ("trials", h.esc(total), ""),
        ("ran ok", h.esc(counts.get("ok", 0)), "good" if counts.get("ok") else ""),
        ("cached", h.esc(counts.get("cached", 0)), ""),
        *([("stopped early", h.esc(counts["pruned"]), "")] if counts.get("pruned") else []),
        ("failed", h.esc(counts.get("failed", 0)), "bad" if counts.get("failed") else ""),
        ("not run", h.esc(counts.get("not_run", 0)), "bad" if counts.get("not_run") else ""),
    ]
    best = m.get("best") or {}
    if best.get("metric") is not None:
        tiles.append(
            (
                f"best {best['metric']}" + (" (mean)" if best.get("n") else ""),
                h.esc(h.fmt(best.get("value")))
                + (f" ± {h.esc(h.fmt(best['std']))}" if is_number(best.get("std")) else "")
                + (f" <small>n={h.esc(best['n'])}</small>" if best.get("n") else "")
                + f" <small>{h.esc(best.get('trial'))}</small>",
                "",
            )
        )
    tiles.append(("duration", h.esc(h.duration(m.get("duration_seconds"))), ""))
    workers = run.host.get("workers") or {}
    backend = m.get("backend") or run.host.get("backend") or "—"
    tiles.append(
        (
            "backend",
            h.esc(backend) + (f" <small>{len(workers)} workers</small>" if workers else ""),
            "",
        )
    )
    if run.reproduce:
        tiles.append(("reproduction", h.badge(run.reproduce.get("verdict")), ""))
    tile_html = "".join(
        f'<div class="tile {cls}"><div class="k">{h.esc(k)}</div><div class="v">{v}</div></div>'
        for k, v, cls in tiles
    )

    sweep = run.resolved.get("sweep") or {}
    sweep_meta = m.get("sweep") or {}
    parts = [
        f"method {sweep.get('method') or sweep_meta.get('method', '—')}",
        f"seed {sweep.get('seed', sweep_meta.get('seed', '—'))}",
    ]
    if sweep.get("samples"):
        parts.append(f"{sweep['samples']} samples")
    if (sweep.get("repeats") or 1) > 1:
        parts.append(f"{sweep['repeats']} repeats per point")
    parts.append(f"{sweep_meta.get('trials', total)} trials")
    durations = run.scan.median_duration()
    items: list[tuple[str, str]] = [
        ("run id", h.mono(m.get("run_id"))),
        ("created", h.esc(m.get("created"))),
        ("trial", _trial_kind(run)),
        ("sweep", h.esc(", ".join(parts))),
    ]
    if run.objective:
        items.append(
            ("objective", f"{h.esc(run.objective.goal)} <b>{h.esc(run.objective.metric)}</b>")
        )
    if durations:
        count, total_time, median, longest = durations
        items.append(
            (
                "trial time",
                h.esc(
                    f"{h.duration(total_time)} in total over {count} trials; "
                    f"median {h.duration(median)}, longest {h.duration(longest)}"
                ),
            )
        )
    items.append(("xrun", h.esc(m.get("xrun_version"))))
    if m.get("reproduces"):
        items.append(("reproduces", h.mono(m["reproduces"])))
    if m.get("stopped"):
        items.append(("stopped", h.esc(m["stopped"])))
    if m.get("error"):
        items.append(("run error", f'<span class="err">{h.esc(m["error"])}</span>'))
    overrides = run.resolved.get("_overrides") or []
    if overrides:
        items.append(("overrides", " ".join(h.mono(o) for o in overrides)))
    return f'<div class="tiles">{tile_html}</div>\n' + h.dl(items)


def _trial_kind(run: Run) -> str:
    trial = run.resolved.get("trial") or {}
    limits = []
    if trial.get("timeout"):
        limits.append(f"timeout {h.duration(trial['timeout'])}")
    if trial.get("retries"):
        limits.append(f"{trial['retries']} retries")
    suffix = h.esc(f" ({', '.join(limits)})") if limits else ""
    if trial.get("function"):
        return f"function {h.mono(trial['function'])}{suffix}"
    sk = trial.get("sklearn") or {}
    if sk:
        source = sk.get("dataset") or sk.get("data")
        return (
            f"scikit-learn {h.mono(sk.get('estimator'))} on {h.mono(source)}, "
            f"{h.esc(sk.get('cv'))}-fold cross-validation{suffix}"
        )
    return "—"


def best_section(run: Run) -> str:
    top = run.ranked(TOP_TRIALS)
    if not top:
        return '<p class="note">No trial succeeded.</p>'

    obj = run.objective
    metrics = metric_names(top, obj)
    headers, numeric = ["#", "trial"], [True, False]
    wide = len(run.params) > 6
    headers += ["params"] if wide else [p.name for p in run.params]
    numeric += [False] if wide else [not p.categorical for p in run.params]
    headers += metrics + ["duration", "source"]
    numeric += [True] * len(metrics) + [True, False]
    rows = []
    for rank, t in enumerate(top, 1):
        row = [h.num(rank), h.text(t.get("id"), "mono")] + _param_cells(run, t, wide)
        row += [_metric_cell(t, m, bold=obj is not None and m == obj.metric) for m in metrics]
        d = trial_duration(t)
        row += [h.Cell(h.esc(h.duration(d)), d, "num"), _source(t)]
        rows.append(row)
    title = (
        f"Top {len(top)} of {run.scan.n_ok} successful trials by {obj.metric} ({obj.goal})"
        if obj
        else f"{run.scan.n_ok} successful trials"
    )
    out = f'<p class="note">{h.esc(title)}.</p>' + h.table(
        headers, rows, cls="best-table", numeric=numeric
    )
    return out.replace("<tbody><tr>", '<tbody><tr class="best">', 1) if obj else out


def _metric_cell(t: dict[str, Any], metric: str, bold: bool = False) -> h.Cell:
    cell = h.num((t.get("metrics") or {}).get(metric))
    if bold:
        cell.html = f"<b>{cell.html}</b>"
    return cell


def _param_cells(run: Run, t: dict[str, Any], wide: bool) -> list[h.Cell]:
    params = t.get("params") or {}
    if wide:
        return [h.text(params_text(t), "mono")]
    cells = []
    for p in run.params:
        v = params.get(p.name)
        cells.append(
            h.num(v) if not p.categorical else h.text(h.param_label(v) if p.name in params else "—")
        )
    return cells


def _source(t: dict[str, Any]) -> h.Cell:
    if t.get("cached"):
        origin = t.get("cached_from")
        return h.Cell(h.badge("cached") + (f" <small>{h.esc(origin)}</small>" if origin else ""))
    attempts = t.get("attempts") or 1
    return h.Cell("ran" + (h.esc(f" ({attempts} attempts)") if attempts > 1 else ""))


def objective_section(run: Run) -> str:
    from runner.report import plots  # deferred: imports matplotlib

    obj = run.objective
    if obj is None:
        return '<p class="note">No objective and no numeric metric to plot.</p>'
    if not run.params:
        return '<p class="note">The sweep has no parameters to plot against.</p>'
    drawn = run.plot_trials
    if not drawn:
        return f'<p class="note">No successful trial reported {h.esc(obj.metric)}.</p>'
    best_id = run.best_id
    figures = []
    n_failed = run.scan.n_failed
    failed_drawn = run.failed[:PLOT_TRIALS]
    for p in run.params[:MAX_PARAM_PLOTS]:
        xs: list[Any] = []
        ys: list[float] = []
        best: int | None = None
        for t in drawn:
            x = _plot_x(p, t)
            if x is not _MISSING:
                if str(t.get("id")) == best_id:
                    best = len(xs)
                xs.append(x)
                ys.append(run.value(t) or 0.0)
        if not xs:
            continue
        failed = [x for x in (_plot_x(p, t) for t in failed_drawn) if x is not _MISSING]
        svg = plots.objective_vs_param(p, xs, ys, failed, best, obj)
        figures.append(f"<figure>{svg}</figure>")
    more = len(run.params) - MAX_PARAM_PLOTS
    note = (
        f"Each dot is a successful trial ({run.scan.n_scored}); ★ marks the best"
        + (f", × in the shaded band a failed trial ({n_failed})" if n_failed else "")
        + ". Categorical values are spread sideways, with a bar at their median."
        + (f" {more} more parameters are not plotted." if more > 0 else "")
        + _sampled_note(len(drawn), run.scan.n_scored)
        + (f" The first {len(failed_drawn):,} failed trials are drawn." if len(failed_drawn) < n_failed else "")
    )
    return f'<div class="plots">{"".join(figures)}</div>\n<p class="note">{h.esc(note)}</p>'


_MISSING = object()


def _plot_x(p: Param, t: dict[str, Any]) -> Any:
    params = t.get("params") or {}
    if p.name not in params:
        return _MISSING
    v = params[p.name]
    if p.categorical:
        label = h.param_label(v)
        return label if label in p.index else _MISSING  # beyond the labels kept: not drawn
    if not is_number(v) or (p.log and v <= 0):
        return _MISSING
    return v


def parallel_section(run: Run) -> str:
    from runner.report import plots  # deferred: imports matplotlib

    obj = run.objective
    params = run.params[:MAX_PARALLEL_PARAMS]
    drawn = run.plot_trials
    if obj is None or not params or not drawn:
        return '<p class="note">Needs at least one parameter and one trial with an objective.</p>'
    rows: list[tuple[list[Any], float]] = []
    best: int | None = None
    for t in drawn:
        xs = [_plot_x(p, t) for p in params]
        if any(x is _MISSING for x in xs):
            continue
        if str(t.get("id")) == run.best_id:
            best = len(rows)
        rows.append((xs, run.value(t) or 0.0))
    if not rows:
        return '<p class="note">No trial has every parameter with a plottable value.</p>'
    svg = plots.parallel_coordinates(params, rows, best, obj)
    better = "brighter" if obj.goal == "maximize" else "brighter (lower)"
    note = (
        f"One line per successful trial, coloured by {obj.metric} ({better} is better); "
        "the best trial in red."
    )
    if len(run.params) > len(params):
        note += f" Only the first {len(params)} parameters are drawn."
    note += _sampled_note(len(drawn), run.scan.n_scored)
    return f"<figure>{svg}<figcaption>{h.esc(note)}</figcaption></figure>"


def timeline_section(run: Run) -> str:
    from runner.report import timeplots  # deferred: imports matplotlib

    tl = run.scan.timeline
    notes = [_cached_note(run)]
    if tl.n_guessed:
        ids = ", ".join(tl.guessed.result()[:20])
        notes.append(
            f"{tl.n_guessed} trials hit their timeout and their worker was restarted ({ids}); "
            f"they are drawn on the row {RESTARTED} as the timeout before they were stopped."
        )
    if tl.n_untimed:
        ids = ", ".join(tl.untimed.result()[:20])
        notes.append(f"{tl.n_untimed} trials have no recorded start and end: {ids}.")
    if not tl.count:
        return '<p class="note">No trial ran in this run.</p>' + "".join(
            f'<p class="note">{h.esc(n)}</p>' for n in notes if n
        )
    hosts = [worker_label(a) for a in list(run.host.get("workers") or {})[:MAX_WORKERS]]
    workers = sorted({w for w in [*tl.workers, *hosts] if w != RESTARTED}, key=_natural_worker)
    workers += [RESTARTED] if tl.n_guessed else []
    bars = tl.final()
    svg = timeplots.timeline(bars, workers)
    wall = tl.t1 - tl.t0
    real = len(workers) - (1 if tl.n_guessed else 0)
    lead = f"{tl.count} trials on {real} workers over {h.duration(wall)}"
    if wall > 0 and real:
        lead += f"; workers were busy {100 * tl.busy / (wall * real):.0f}% of that time"
    caption = " ".join(x for x in [lead + ".", *notes] if x)
    return f"<figure>{svg}<figcaption>{h.esc(caption)}</figcaption></figure>"


def _cached_note(run: Run) -> str:
    s = run.scan
    if not s.n_cached:
        return ""
    origins = sorted(s.cached_from)
    source = (
        f" (from {', '.join(origins[:3])}{' …' if len(origins) > 3 else ''})" if origins else ""
    )
    ids = s.cached_ids.result()
    listed = ", ".join(ids[:30]) + (", …" if s.n_cached > 30 else ".")
    return (
        f"{s.n_cached} trials came from the cache{source} and did not run here, "
        f"so they are not drawn: {listed}"
    )


def _natural_worker(label: str) -> list[Any]:
    """Sort key: numbers inside a label compare as numbers (10.0.0.2 before 10.0.0.10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]
