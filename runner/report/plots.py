"""The report's plots: matplotlib figures rendered to inline SVG strings.

matplotlib is imported inside the functions (``import runner.report`` stays
cheap) and used without pyplot: figures are plain ``Figure`` objects, so no
global backend or figure registry is touched in the caller's process. Every
figure is rendered under fixed rcParams with a per-figure hash salt, so the
SVG is byte-identical for the same bundle and the ids of several inline SVGs
in one page never collide.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from runner.objective import Objective

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

_RC: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text: small, selectable, searchable
    "font.family": "DejaVu Sans",  # ships with matplotlib: same metrics everywhere
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
    "text.parse_math": False,  # labels are user text: "$5" is five dollars, not mathtext
    "text.usetex": False,
}


@dataclass
class Param:
    """One sweep parameter as the plots see it."""

    name: str
    categorical: bool
    log: bool = False
    categories: Sequence[str] = ()  # display labels, in axis order (categorical only)

    @cached_property
    def index(self) -> frozenset[str]:
        """The categories, to look labels up."""
        return frozenset(self.categories)


# ------------------------------------------------------------------ rendering


def _svg(fig: Any, salt: str, label: str) -> str:
    """``fig`` as an inline ``<svg>`` element: deterministic, responsive, labelled."""
    import matplotlib  # deferred: matplotlib is slow to import; only when drawing

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
    return html.escape(text, quote=True)


def _figure(
    width: float, height: float, *, left: float, right: float, top: float, bottom: float
) -> Any:
    """A figure ``width`` x ``height`` inches with margins in pixels (at 100 dpi).

    Fixed margins instead of a layout engine: the plots' contents are known,
    and a layout pass would double the drawing time of large sweeps.
    """
    # deferred: matplotlib is slow to import; only when drawing
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    w, h = width * 100, height * 100
    fig.subplots_adjust(left=left / w, right=1 - right / w, top=1 - top / h, bottom=bottom / h)
    return fig


def _plain_log_axis(axis: Any) -> None:
    """Log ticks as plain numbers (0.001, not 10^-3): no mathtext, which is slow to start."""
    from matplotlib.ticker import (  # deferred: matplotlib is slow to import; only when drawing
        FuncFormatter,
        NullFormatter,
    )

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _rc() -> Any:
    import matplotlib  # deferred: matplotlib is slow to import; only when drawing

    rc: Any = _RC
    return matplotlib.rc_context(rc)


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
    best: int | None,
    objective: Objective,
) -> str:
    """Objective of each successful trial against one parameter.

    ``xs`` are numbers for numeric parameters and display labels (members of
    ``param.categories``) for categorical ones; ``best`` indexes the best trial
    in ``xs``/``ys``. Failed trials are marked in a band below the data, so the
    plot shows where in the space trials fail.
    """
    # deferred: matplotlib is slow to import; only when drawing
    from matplotlib.transforms import blended_transform_factory

    _, shown, rotate = _category_ticks(param.categories if param.categorical else [])
    # Slanted category labels need room below the axis: about 0.6 of their length.
    bottom = 44 + (max(len(s) for s in shown) * 4.2 if rotate else 0)
    with _rc():
        fig = _figure(4.6, 3.2 + (bottom - 44) / 100, left=62, right=12, top=30, bottom=bottom)
        ax = fig.add_subplot()
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        raster = len(xs) + len(failed_xs) > RASTERIZE_ABOVE
        alpha = 0.85 if len(xs) < 50 else 0.55 if len(xs) < 400 else 0.3
        index = {c: i for i, c in enumerate(param.categories)}
        if param.categorical:
            px = [index[x] + o for x, o in zip(xs, _jitter(len(xs)))]
            fx = [index[x] + o for x, o in zip(failed_xs, _jitter(len(failed_xs)))]
            # A short bar at each category's median objective.
            for cat, i in index.items():
                vals = sorted(y for x, y in zip(xs, ys) if x == cat)
                if vals:
                    med = vals[len(vals) // 2]
                    ax.plot([i - 0.36, i + 0.36], [med, med], color=TEXT, linewidth=1.6, zorder=4)
            _category_axis(ax, param.categories, "x")
            ax.set_xlim(-0.6, len(param.categories) - 0.4)
        else:
            px, fx = list(xs), list(failed_xs)
            if param.log:
                ax.set_xscale("log")
                _plain_log_axis(ax.xaxis)
        ax.scatter(
            px, ys, s=18, color=POINT, alpha=alpha, linewidths=0, rasterized=raster, zorder=3
        )
        handles = []
        if best is not None:
            handles.append(
                ax.scatter(
                    [px[best]],
                    [ys[best]],
                    s=110,
                    marker="*",
                    color=BEST,
                    edgecolors="white",
                    linewidths=0.6,
                    zorder=5,
                    label="best",
                )
            )
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.06 or abs(hi) * 0.05 or 0.05
        if fx:
            # The data fill the axes above 12% of its height; failures sit below.
            span = (hi - lo) + 2 * pad
            ax.set_ylim(lo - pad - span * 0.12 / 0.88, hi + pad)
            trans = blended_transform_factory(ax.transData, ax.transAxes)
            ax.axhspan(lo - pad - span, lo - pad, color=FAILED, alpha=0.06, linewidth=0, zorder=1)
            handles.append(
                ax.scatter(
                    fx,
                    [0.055] * len(fx),
                    s=22,
                    marker="x",
                    color=FAILED,
                    transform=trans,
                    linewidths=1.1,
                    rasterized=raster,
                    zorder=5,
                    label="failed",
                )
            )
        else:
            ax.set_ylim(lo - pad, hi + pad)
        # No objective ticks in the failure band: failed trials have no value.
        ax.set_yticks([y for y in ax.get_yticks() if lo - pad <= y <= hi + pad])
        ax.set_xlabel(param.name + (" (log)" if param.log else ""))
        ax.set_ylabel(objective.metric)
        if handles:
            ax.legend(
                handles=handles,
                loc="lower right",
                bbox_to_anchor=(1.0, 1.0),
                ncols=len(handles),
                fontsize=8,
                handletextpad=0.1,
                columnspacing=0.8,
                borderaxespad=0.1,
            )
        ax.set_title(f"{objective.metric} by {param.name}", loc="left")
        return _svg(fig, f"param-{param.name}", f"{objective.metric} against {param.name}")


def _category_ticks(labels: Sequence[str]) -> tuple[list[int], list[str], bool]:
    """Tick positions, their (shortened) labels, and whether to slant them."""
    step = max(1, math.ceil(len(labels) / MAX_CATEGORY_LABELS))
    ticks = list(range(0, len(labels), step))
    shown = [_short(labels[i]) for i in ticks]
    rotate = len(ticks) > 6 or max((len(s) for s in shown), default=0) > 8
    return ticks, shown, rotate


def _category_axis(ax: Any, labels: Sequence[str], which: str) -> None:
    ticks, shown, rotate = _category_ticks(labels)
    if which == "x":
        ax.set_xticks(
            ticks,
            shown,
            rotation=35 if rotate else 0,
            ha="right" if rotate else "center",
            rotation_mode="anchor",
        )
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
    from matplotlib import colormaps  # deferred: matplotlib is slow to import; only when drawing
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    with _rc():
        fig = _figure(11.0, 3.9, left=12, right=12, top=44, bottom=28)
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
        # viridis without its palest end, which vanishes on white; reversed when lower is better.
        cmap = colormaps["viridis"]
        norm = Normalize(lo, hi if hi > lo else lo + 1)

        import numpy as np  # deferred: only when drawing or running a trial that needs it

        f = np.asarray(norm(np.asarray([objs[i] for i in order], dtype=float)), dtype=float)
        colors = cmap(0.88 * (1 - f if reverse else f))  # one vectorized call, not one per line
        alpha = 0.9 if len(rows) < 50 else 0.55 if len(rows) < 400 else 0.3
        lines = LineCollection(
            segments,
            colors=colors,
            linewidths=1.2,
            alpha=alpha,
            rasterized=len(rows) > RASTERIZE_ABOVE,
        )
        ax.add_collection(lines)
        if best is not None:
            values, obj = rows[best]
            ys = [scalers[j][0](values[j]) for j in range(len(params))] + [obj_scale(obj)]
            ax.plot(range(axes_n), ys, color=BEST, linewidth=2.6, zorder=5, label="best trial")
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, borderaxespad=0.1)
        for j in range(axes_n):
            ax.axvline(j, color="#59606b", linewidth=1.0, zorder=4)
            ticks = scalers[j][1] if j < len(params) else _numeric_ticks(lo, hi, False)
            for y, label in ticks:
                ax.text(
                    j + 0.03,
                    y,
                    label,
                    fontsize=7.5,
                    va="center",
                    ha="left",
                    color=TEXT,
                    zorder=6,
                    bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.75},
                )
        names = [p.name + (" (log)" if p.log else "") for p in params] + [objective.metric]
        ax.set_xticks(range(axes_n), [_short(n, 18) for n in names])
        ax.get_xticklabels()[-1].set_fontweight("bold")
        ax.set_xlim(-0.08, axes_n - 1 + 0.25)
        ax.set_ylim(-0.06, 1.06)
        ax.set_yticks([])
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="x", length=0)
        ax.set_title(f"parameters → {objective.metric}", loc="left")
        return _svg(
            fig, "parallel", f"parallel coordinates of the parameters and {objective.metric}"
        )


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
    return [(0.0, f"{lo:.3g}"), (0.5, f"{mid:.3g}"), (1.0, f"{hi:.3g}")]
