"""The report's section on an adaptive sweep (``search.json``): the best value
so far against trials, where the sampler put its points, learning curves with
the trials stopped early marked, and the Pareto front of a multi-objective one.

Drawn in the style of :mod:`runner.report.plots` (same rcParams, colours,
margins and deterministic SVG)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runner.objective import Objective, is_number
from runner.report import html as h
from runner.report.data import Run, _read_json
from runner.report.plots import (
    BEST,
    GRID,
    POINT,
    TEXT,
    Param,
    _category_axis,
    _figure,
    _plain_log_axis,
    _rc,
    _short,
    _svg,
)

PRUNED = "#9aa1ab"
MAX_CURVES = 200
MAX_TRIALS = 2000  # trials drawn (the first by id): the Pareto front is quadratic
MAX_SPACE_PARAMS = 8
CURVE_LENGTH = 2000


def is_adaptive(run: Run) -> bool:
    method = (run.resolved.get("sweep") or {}).get("method")
    return method in ("tpe", "cmaes", "nsga2", "qmc")


def search_section(run: Run) -> str:
    """Shown for adaptive sweeps only (see :func:`is_adaptive`)."""
    search = _read_json(run.root, "search.json")
    search = search if isinstance(search, dict) else {}
    gens = [g for g in search.get("generations") or [] if isinstance(g, dict)] if isinstance(search.get("generations"), list) else []
    generation_of: dict[str, int] = {}
    for number, g in enumerate(gens):
        listed = g.get("trials")
        for t in listed if isinstance(listed, list) else []:
            if isinstance(t, dict):
                generation_of[str(t.get("id"))] = number
    trials = [t for t in run.trials[:MAX_TRIALS] if str(t.get("id")) in generation_of or not generation_of]
    sweep = run.resolved.get("sweep") or {}
    parts = [_facts(search, sweep, run, len(gens))]
    objectives = _objectives(sweep)
    if len(objectives) >= 2:
        parts.append(_pareto(run, trials, objectives))
    elif run.objective is not None:
        parts.append(_best_so_far(run, trials, generation_of, run.objective))
    parts.append(_space(run, trials, generation_of))
    parts.append(_curves(run, trials, sweep))
    if run.scan.total > MAX_TRIALS:
        parts.append(f'<p class="note">The plots of this section show the first {MAX_TRIALS:,} of the '
                     f"{run.scan.total:,} trials.</p>")  # fmt: skip
    return "\n".join(p for p in parts if p)


def _facts(search: dict[str, Any], sweep: dict[str, Any], run: Run, n_gens: int) -> str:
    counts = run.meta.get("counts") or {}
    stop = sweep.get("early_stop") if isinstance(sweep.get("early_stop"), dict) else None
    items = [
        ("method", h.esc(sweep.get("method"))),
        ("budget", h.esc(sweep.get("samples"))),
        ("generations", f"{h.esc(n_gens)} of {h.esc(search.get('batch'))} trials"),
        ("decided", h.esc(search.get("decided"))),
        ("Optuna", h.esc(search.get("optuna") or "?")),
    ]
    if stop:
        items.append(("early stopping", h.esc(f"{stop.get('rule')}, steps {stop.get('min_steps')}…{stop.get('max_steps') or ''}")
                      + f" <small>{h.esc(counts.get('pruned', 0))} stopped early</small>"))  # fmt: skip
    return h.dl(items) + (
        '<p class="note">Points were asked in generations of a fixed size and each generation was told the '
        "results of the earlier ones in trial order: the path depends on the results only, not on the cluster. "
        "Every suggestion is in search.json.</p>"
    )


def _objectives(sweep: dict[str, Any]) -> list[Objective]:
    raw = sweep.get("objectives")
    if not isinstance(raw, list):
        return []
    return [Objective(str(o.get("metric")), "minimize" if o.get("goal") == "minimize" else "maximize")
            for o in raw if isinstance(o, dict) and o.get("metric")]  # fmt: skip


# ------------------------------------------------------------------ best so far


def _best_so_far(run: Run, trials: list[dict[str, Any]], generation_of: dict[str, int], obj: Objective) -> str:
    rows = []
    for i, t in enumerate(trials):
        v = obj.value(t)
        if v is not None and t.get("status") in ("ok", "pruned"):
            rows.append((i, v, str(t.get("status"))))
    if not rows:
        return f'<p class="note">No trial reported {h.esc(obj.metric)}.</p>'
    bounds = [i for i in range(1, len(trials)) if generation_of.get(str(trials[i].get("id")))
              != generation_of.get(str(trials[i - 1].get("id")))]  # fmt: skip
    svg = best_so_far_plot(rows, bounds, obj)
    return f'<div class="plots"><figure>{svg}<figcaption>{h.esc(_best_note(obj))}</figcaption></figure></div>'


def _best_note(obj: Objective) -> str:
    return (f"{obj.metric} of each trial in the order the search asked them (grey: stopped early, its last value); "
            f"the line is the best finished value so far; dashed lines separate generations.")  # fmt: skip


def best_so_far_plot(rows: Sequence[tuple[int, float, str]], bounds: Sequence[int], obj: Objective) -> str:
    from matplotlib.ticker import MaxNLocator  # deferred: imports matplotlib

    with _rc():
        fig = _figure(6.4, 3.3, left=62, right=14, top=30, bottom=44)
        ax = fig.add_subplot()
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        for b in bounds:
            ax.axvline(b - 0.5, color=GRID, linewidth=1.0, linestyle="--", zorder=1)
        ok = [(i, v) for i, v, s in rows if s == "ok"]
        pruned = [(i, v) for i, v, s in rows if s == "pruned"]
        if pruned:
            ax.scatter(*zip(*pruned), s=16, color=PRUNED, marker="x", linewidths=1.0, zorder=3, label="stopped early")
        if ok:
            ax.scatter(*zip(*ok), s=18, color=POINT, linewidths=0, zorder=3, label="finished")
            best: float | None = None
            line = []
            for i, v in ok:
                best = v if best is None or obj.better(v, best) else best
                line.append((i, best))
            xs, ys = zip(*line)
            ax.step(xs, ys, where="post", color=BEST, linewidth=1.6, zorder=4, label="best so far")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial (order asked)")
        ax.set_ylabel(obj.metric)
        ax.legend(fontsize=8, loc="best")
        ax.set_title(f"best {obj.metric} so far", loc="left")
        return _svg(fig, "search-best", f"best {obj.metric} so far against trials")


# ------------------------------------------------------------------ the sampler's points


def _space(run: Run, trials: list[dict[str, Any]], generation_of: dict[str, int]) -> str:
    params = run.params[:MAX_SPACE_PARAMS]
    if not params or not trials:
        return ""
    svg = space_plot(params, [(i, t.get("params") or {}, generation_of.get(str(t.get("id")), 0)) for i, t in enumerate(trials)])
    note = "Each parameter's value at each trial, coloured by generation: where the sampler moved as results came in."
    if len(run.params) > len(params):
        note += f" Only the first {len(params)} parameters are drawn."
    return f'<figure class="plot-wide">{svg}<figcaption>{h.esc(note)}</figcaption></figure>'


def space_plot(params: Sequence[Param], rows: Sequence[tuple[int, dict[str, Any], int]]) -> str:
    from matplotlib.ticker import MaxNLocator  # deferred: imports matplotlib

    n = len(params)
    cols = 2 if n > 1 else 1
    nrows = (n + cols - 1) // cols
    last = max((g for _, _, g in rows), default=0)
    with _rc():
        fig = _figure(11.0, 0.4 + 2.3 * nrows, left=70, right=14, top=30, bottom=40)
        fig.subplots_adjust(hspace=0.55, wspace=0.28)
        for k, p in enumerate(params):
            ax = fig.add_subplot(nrows, cols, k + 1)
            ax.grid(True, color=GRID, linewidth=0.8)
            ax.set_axisbelow(True)
            index = {c: i for i, c in enumerate(p.categories)}
            xs, ys, cs = [], [], []
            for i, values, g in rows:
                if p.name not in values:
                    continue
                v = values[p.name]
                if p.categorical:
                    y: Any = index.get(h.param_label(v))
                elif is_number(v) and not (p.log and v <= 0):
                    y = v
                else:
                    y = None
                if y is not None:
                    xs.append(i)
                    ys.append(y)
                    cs.append(g)
            ax.scatter(xs, ys, c=cs, cmap="viridis", vmin=0, vmax=max(last, 1), s=14, linewidths=0)
            if p.categorical:
                _category_axis(ax, p.categories, "y")
            elif p.log:
                ax.set_yscale("log")
                _plain_log_axis(ax.yaxis)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(_short(p.name, 30), loc="left", fontsize=9)
            if k >= n - cols:
                ax.set_xlabel("trial (order asked)")
        return _svg(fig, "search-space", "the sampler's points for each parameter, by trial and generation")


# ------------------------------------------------------------------ learning curves


def _curves(run: Run, trials: list[dict[str, Any]], sweep: dict[str, Any]) -> str:
    stop = sweep.get("early_stop") if isinstance(sweep.get("early_stop"), dict) else None
    metric = (stop or {}).get("metric") or (run.objective.metric if run.objective else None)
    if not metric:
        return ""
    chosen = [t for t in trials if t.get("status") in ("ok", "pruned")][:MAX_CURVES]
    histories = run.histories({str(t.get("id")) for t in chosen})
    curves = []
    for t in chosen:
        curve = []
        for e in histories.get(str(t.get("id")), [])[:CURVE_LENGTH]:
            x, y = e.get("step"), e.get(metric)
            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and is_number(x) and is_number(y):
                curve.append((float(x), float(y)))
        if curve:
            curves.append((curve, t.get("status") == "pruned"))
    if not curves:
        return ""
    svg = pruned_curves_plot(str(metric), curves)
    n = sum(1 for _, p in curves if p)
    note = f"{metric} logged with ctx.log(step=…) by each trial; {n} stopped early (grey, × where it stopped)."
    return f'<figure class="plot-wide">{svg}<figcaption>{h.esc(note)}</figcaption></figure>'


def pruned_curves_plot(metric: str, curves: Sequence[tuple[Sequence[tuple[float, float]], bool]]) -> str:
    from matplotlib.lines import Line2D  # deferred: imports matplotlib

    with _rc():
        fig = _figure(11.0, 3.8, left=64, right=14, top=34, bottom=46)
        ax = fig.add_subplot()
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        for curve, pruned in curves:
            xs, ys = zip(*curve)
            ax.plot(xs, ys, color=PRUNED if pruned else POINT, linewidth=0.9, alpha=0.6 if pruned else 0.7)
            if pruned:
                ax.scatter([xs[-1]], [ys[-1]], marker="x", s=20, color=TEXT, linewidths=1.0, zorder=4)
        ax.legend(handles=[Line2D([], [], color=POINT, label="ran to the end"),
                           Line2D([], [], color=PRUNED, marker="x", markeredgecolor=TEXT, label="stopped early")],
                  fontsize=8, loc="best")  # fmt: skip
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} during each trial", loc="left")
        return _svg(fig, "search-curves", f"learning curves of {metric}, trials stopped early marked")


# ------------------------------------------------------------------ Pareto front


def pareto_front(points: Sequence[tuple[float, float]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the points no other point dominates (better or equal in both, better in one)."""
    signs = [o.sign for o in objectives[:2]]
    keyed = [(a * signs[0], b * signs[1]) for a, b in points]  # smaller is better in both
    front = []
    for i, (a, b) in enumerate(keyed):
        if not any((c <= a and d <= b) and (c < a or d < b) for j, (c, d) in enumerate(keyed) if j != i):
            front.append(i)
    return front


def _pareto(run: Run, trials: list[dict[str, Any]], objectives: list[Objective]) -> str:
    a, b = objectives[0], objectives[1]
    rows = [(a.value(t), b.value(t), str(t.get("id"))) for t in trials if t.get("status") == "ok"]
    pts = [(x, y, i) for x, y, i in rows if x is not None and y is not None]
    if not pts:
        return '<p class="note">No finished trial reported both objectives.</p>'
    xy = [(x, y) for x, y, _ in pts]
    front = pareto_front(xy, objectives)
    svg = pareto_plot(xy, front, a, b)
    ids = ", ".join(pts[i][2] for i in sorted(front, key=lambda i: xy[i][0]))
    note = f"Each finished trial by {a.metric} ({a.goal}) and {b.metric} ({b.goal}); the Pareto front in red: {ids}."
    return f'<div class="plots"><figure>{svg}<figcaption>{h.esc(note)}</figcaption></figure></div>'


def pareto_plot(points: Sequence[tuple[float, float]], front: Sequence[int], a: Objective, b: Objective) -> str:
    with _rc():
        fig = _figure(5.4, 3.8, left=62, right=14, top=30, bottom=44)
        ax = fig.add_subplot()
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        ax.scatter(*zip(*points), s=18, color=POINT, linewidths=0, alpha=0.7, zorder=3, label="trial")
        line = sorted(points[i] for i in front)
        ax.plot(*zip(*line), color=BEST, linewidth=1.2, zorder=4)
        ax.scatter(*zip(*line), s=40, color=BEST, marker="D", linewidths=0, zorder=5, label="Pareto front")
        ax.set_xlabel(f"{a.metric} ({a.goal})")
        ax.set_ylabel(f"{b.metric} ({b.goal})")
        ax.legend(fontsize=8, loc="best")
        ax.set_title("Pareto front", loc="left")
        return _svg(fig, "search-pareto", f"Pareto front of {a.metric} and {b.metric}")
