"""The report's plots: matplotlib figures rendered to inline SVG strings.

matplotlib is imported inside the functions (``import runner.report`` stays
cheap) and used without pyplot: figures are plain ``Figure`` objects, so no
global backend or figure registry is touched in the caller's process. Every
figure is rendered under fixed rcParams with a per-figure hash salt, so the
SVG is byte-identical for the same bundle and the ids of several inline SVGs
in one page never collide.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Colours of trial statuses, shared with the page's CSS badges.
STATUS_COLORS = {
    "ok": "#3b8f5a",
    "cached": "#8fb9d9",
    "error": "#d1495b",
    "timeout": "#e89f2c",
    "oom": "#8e5ea2",
    "worker-lost": "#4a4a4a",
    "cancelled": "#a0a0a0",
}
POINT = "#2f6db3"
BEST = "#d1495b"
FAILED = "#d1495b"
GRID = "#e6e8eb"
TEXT = "#2b2f36"

# Above this many marks a plot layer is drawn as an embedded bitmap: the page
# stays small and quick to open however many trials a sweep has.
RASTERIZE_ABOVE = 1500
MAX_CATEGORY_LABELS = 24

_RC = {
    "svg.fonttype": "none",  # text stays text: small, selectable, searchable
    "font.family": ["DejaVu Sans", "Liberation Sans", "Arial", "sans-serif"],
    "font.size": 9.0,
    "axes.edgecolor": "#9aa1ab",
    "axes.labelcolor": TEXT,
    "axes.titlesize": 10.0,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": "#59606b",
    "ytick.color": "#59606b",
    "legend.frameon": False,
    "path.simplify": True,
}


@dataclass
class Param:
    """One sweep parameter as the plots see it."""

    name: str
    categorical: bool
    log: bool = False
    categories: Sequence[str] = ()  # display labels, in axis order (categorical only)


@dataclass
class Objective:
    metric: str
    goal: str  # maximize | minimize


# ------------------------------------------------------------------ rendering


def _svg(fig: Any, salt: str, label: str) -> str:
    """``fig`` as an inline ``<svg>`` element: deterministic, responsive, labelled."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"xrun-report-{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    start = text.index("<svg")
    text = text[start:]
    # Size comes from the page's CSS; the viewBox keeps the aspect ratio.
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    head += f' class="plot" role="img" aria-label="{_attr(label)}"'
    return head + text[head_end:].rstrip() + "\n"


def _attr(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _rc() -> Any:
    import matplotlib

    return matplotlib.rc_context(_RC)


def _jitter(n: int, width: float = 0.28) -> list[float]:
    """Deterministic offsets in [-width, width] (a low-discrepancy sequence)."""
    golden = 0.6180339887498949
    return [((i * golden) % 1.0 - 0.5) * 2 * width for i in range(n)]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ------------------------------------------------------------------ objective vs parameter


def objective_vs_param(
    param: Param,
    xs: Sequence[Any],
    ys: Sequence[float],
    failed_xs: Sequence[Any],
    best_x: Any,
    best_y: float | None,
    objective: Objective,
) -> str:
    """Objective of each successful trial against one parameter.

    ``xs`` are numbers for numeric parameters and display labels (members of
    ``param.categories``) for categorical ones. Failed trials are marked on the
    bottom edge, so it shows where in the space trials fail.
    """
    from matplotlib.transforms import blended_transform_factory

    with _rc():
        fig = _figure(4.3, 3.1)
        ax = fig.add_subplot()
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        n = len(xs) + len(failed_xs)
        raster = n > RASTERIZE_ABOVE
        alpha = 0.85 if len(xs) < 50 else 0.55 if len(xs) < 400 else 0.3
        index = {c: i for i, c in enumerate(param.categories)}
        if param.categorical:
            offsets = _jitter(len(xs))
            px = [index[x] + o for x, o in zip(xs, offsets)]
            fx = [index[x] for x in failed_xs]
            bx = index.get(best_x) if best_x is not None else None
            # A short bar at each category's median objective.
            for cat, i in index.items():
                vals = sorted(y for x, y in zip(xs, ys) if x == cat)
                if vals:
                    med = vals[len(vals) // 2]
                    ax.plot([i - 0.36, i + 0.36], [med, med], color=TEXT, linewidth=1.6, zorder=4)
            _category_axis(ax, param.categories, "x")
            ax.set_xlim(-0.6, len(param.categories) - 0.4)
        else:
            px, fx, bx = list(xs), list(failed_xs), best_x
            if param.log:
                ax.set_xscale("log")
        ax.scatter(px, ys, s=18, color=POINT, alpha=alpha, linewidths=0, rasterized=raster, zorder=3)
        if bx is not None and best_y is not None:
            ax.scatter([bx], [best_y], s=90, marker="*", color=BEST, edgecolors="white",
                       linewidths=0.6, zorder=5, label="best")  # fmt: skip
        if fx:
            trans = blended_transform_factory(ax.transData, ax.transAxes)
            fy = [0.03] * len(fx)
            if param.categorical:
                fx = [x + o for x, o in zip(fx, _jitter(len(fx)))]
            ax.scatter(fx, fy, s=22, marker="x", color=FAILED, transform=trans, linewidths=1.1,
                       rasterized=raster, zorder=5, clip_on=False, label="failed")  # fmt: skip
        ax.set_xlabel(param.name + (" (log)" if param.log else ""))
        ax.set_ylabel(objective.metric)
        if fx or bx is not None:
            ax.legend(loc="best", fontsize=8, handletextpad=0.2, borderaxespad=0.2)
        ax.set_title(f"{objective.metric} by {param.name}", loc="left")
        return _svg(fig, f"param-{param.name}", f"{objective.metric} against {param.name}")


def _category_axis(ax: Any, labels: Sequence[str], which: str) -> None:
    step = max(1, math.ceil(len(labels) / MAX_CATEGORY_LABELS))
    ticks = list(range(0, len(labels), step))
    shown = [_short(labels[i]) for i in ticks]
    rotate = len(ticks) > 6 or max((len(s) for s in shown), default=0) > 8
    if which == "x":
        ax.set_xticks(ticks, shown, rotation=35 if rotate else 0, ha="right" if rotate else "center")
    else:
        ax.set_yticks(ticks, shown)


def _short(label: str, limit: int = 22) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


# ------------------------------------------------------------------ parallel coordinates


def parallel_coordinates(
    params: Sequence[Param],
    rows: Sequence[tuple[Sequence[Any], float]],
    best: int | None,
    objective: Objective,
) -> str:
    """One polyline per successful trial through every parameter to the objective.

    ``rows`` hold each trial's parameter values (numbers, or category labels)
    and its objective. Lines are coloured by objective, better on top; the best
    trial is drawn thick.
    """
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    with _rc():
        fig = _figure(11.0, 3.9)
        ax = fig.add_subplot()
        axes_n = len(params) + 1
        scalers = [_scaler(p, [r[0][i] for r in rows]) for i, p in enumerate(params)]
        objs = [r[1] for r in rows]
        lo, hi = min(objs), max(objs)
        obj_scale = _numeric_scaler(lo, hi, log=False)
        reverse = objective.goal == "minimize"
        order = sorted(range(len(rows)), key=lambda i: objs[i], reverse=reverse)
        segments = []
        for i in order:
            values, obj = rows[i]
            ys = [scalers[j][0](values[j]) for j in range(len(params))] + [obj_scale(obj)]
            segments.append(list(zip(range(axes_n), ys)))
        cmap = colormaps["viridis" if not reverse else "viridis_r"]
        norm = Normalize(lo, hi if hi > lo else lo + 1)
        colors = [cmap(norm(objs[i])) for i in order]
        alpha = 0.9 if len(rows) < 50 else 0.55 if len(rows) < 400 else 0.3
        lines = LineCollection(segments, colors=colors, linewidths=1.2, alpha=alpha,
                               rasterized=len(rows) > RASTERIZE_ABOVE)  # fmt: skip
        ax.add_collection(lines)
        if best is not None:
            values, obj = rows[best]
            ys = [scalers[j][0](values[j]) for j in range(len(params))] + [obj_scale(obj)]
            ax.plot(range(axes_n), ys, color=BEST, linewidth=2.6, zorder=5, label="best trial")
            ax.legend(loc="upper left", bbox_to_anchor=(0, 1.13), fontsize=8)
        for j in range(axes_n):
            ax.axvline(j, color="#59606b", linewidth=1.0, zorder=4)
            ticks = scalers[j][1] if j < len(params) else _numeric_ticks(lo, hi, False)
            for y, label in ticks:
                ax.text(j + 0.03, y, label, fontsize=7.5, va="center", ha="left", color=TEXT,
                        zorder=6, bbox={"boxstyle": "round,pad=0.12", "fc": "white",
                                        "ec": "none", "alpha": 0.75})  # fmt: skip
        names = [p.name + (" (log)" if p.log else "") for p in params] + [objective.metric]
        ax.set_xticks(range(axes_n), [_short(n, 18) for n in names])
        ax.get_xticklabels()[-1].set_fontweight("bold")
        ax.set_xlim(-0.1, axes_n - 1 + 0.45)
        ax.set_ylim(-0.06, 1.06)
        ax.set_yticks([])
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="x", length=0)
        ax.set_title(f"parameters → {objective.metric}", loc="left")
        return _svg(fig, "parallel", f"parallel coordinates of the parameters and {objective.metric}")


def _scaler(param: Param, values: Sequence[Any]) -> tuple[Any, list[tuple[float, str]]]:
    """A map of values to [0, 1] and the tick labels of the axis."""
    if param.categorical:
        cats = list(param.categories)
        k = len(cats)
        pos = {c: (i / (k - 1) if k > 1 else 0.5) for i, c in enumerate(cats)}
        step = max(1, math.ceil(k / 12))
        ticks = [(pos[c], _short(c, 14)) for i, c in enumerate(cats) if i % step == 0]
        return (lambda v: pos[v]), ticks
    nums = [v for v in values if _is_number(v)]
    lo, hi = (min(nums), max(nums)) if nums else (0.0, 1.0)
    log = param.log and lo > 0
    return _numeric_scaler(lo, hi, log), _numeric_ticks(lo, hi, log)


def _numeric_scaler(lo: float, hi: float, log: bool) -> Any:
    if log:
        a, b = math.log10(lo), math.log10(hi)
        return lambda v: 0.5 if b == a else (math.log10(v) - a) / (b - a)
    return lambda v: 0.5 if hi == lo else (v - lo) / (hi - lo)


def _numeric_ticks(lo: float, hi: float, log: bool) -> list[tuple[float, str]]:
    if hi == lo:
        return [(0.5, f"{lo:.4g}")]
    mid = 10 ** ((math.log10(lo) + math.log10(hi)) / 2) if log else (lo + hi) / 2
    return [(0.0, f"{lo:.4g}"), (0.5, f"{mid:.3g}"), (1.0, f"{hi:.4g}")]


# ------------------------------------------------------------------ timeline


def timeline(
    bars: Sequence[tuple[str, float, float, str]],
    workers: Sequence[str],
) -> str:
    """Trials as bars per worker over time, coloured by status.

    ``bars`` are ``(worker label, start, end, status)`` with times in seconds
    since the run's first trial started; ``workers`` gives the row order.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    rows = {w: i for i, w in enumerate(workers)}
    with _rc():
        height = min(0.9 + 0.34 * len(workers), 12.0)
        fig = _figure(11.0, max(height, 1.9))
        ax = fig.add_subplot()
        polys, faces = [], []
        for worker, start, end, status in bars:
            y = rows[worker]
            end = max(end, start + 1e-3)
            polys.append([(start, y - 0.38), (end, y - 0.38), (end, y + 0.38), (start, y + 0.38)])
            faces.append(STATUS_COLORS.get(status, STATUS_COLORS["error"]))
        ax.add_collection(PolyCollection(polys, facecolors=faces, edgecolors="white",
                                         linewidths=0.5, rasterized=len(polys) > RASTERIZE_ABOVE))  # fmt: skip
        span = max((b[2] for b in bars), default=1.0) or 1.0
        ax.set_xlim(0, span * 1.01)
        ax.set_ylim(len(workers) - 0.5, -0.5)
        label_size = 8.0 if len(workers) <= 30 else 5.5
        ax.set_yticks(range(len(workers)), [_short(w, 28) for w in workers], fontsize=label_size)
        ax.set_xlabel("seconds since the first trial started")
        ax.grid(True, axis="x", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        present = [s for s in STATUS_COLORS if any(b[3] == s for b in bars)]
        ax.legend(handles=[Patch(color=STATUS_COLORS[s], label=s) for s in present],
                  loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(present), fontsize=8)  # fmt: skip
        ax.set_title("trials per worker", loc="left")
        return _svg(fig, "timeline", "timeline of trials per worker, coloured by status")
