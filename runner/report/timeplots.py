"""Plots over time: the timeline of trials per worker and the learning curves from ``ctx.log``."""

from __future__ import annotations

from collections.abc import Sequence

from runner.report.plots import GRID, RASTERIZE_ABOVE, STATUS_COLORS, _figure, _rc, _short, _svg

# ------------------------------------------------------------------ timeline


def timeline(
    bars: Sequence[tuple[str, float, float, str]],
    workers: Sequence[str],
) -> str:
    """Trials as bars per worker over time, coloured by status.

    ``bars`` are ``(worker label, start, end, status)`` with times in seconds
    since the run's first trial started; ``workers`` gives the row order.
    """
    # deferred: matplotlib is slow to import; only when drawing
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    rows = {w: i for i, w in enumerate(workers)}
    label_size = 8.0 if len(workers) <= 30 else 5.5
    longest = max((len(_short(w, 28)) for w in workers), default=4)
    left = 20 + longest * label_size * 0.62 * 100 / 72
    with _rc():
        height = max(min(0.8 + 0.3 * len(workers), 12.0), 1.9)
        fig = _figure(11.0, height, left=left, right=14, top=34, bottom=40)
        ax = fig.add_subplot()
        polys, faces = [], []
        for worker, start, end, status in bars:
            y = rows[worker]
            end = max(end, start + 1e-3)
            polys.append([(start, y - 0.38), (end, y - 0.38), (end, y + 0.38), (start, y + 0.38)])
            faces.append(STATUS_COLORS.get(status, STATUS_COLORS["error"]))
        ax.add_collection(
            PolyCollection(
                polys,
                facecolors=faces,
                edgecolors="white",
                linewidths=0.5,
                rasterized=len(polys) > RASTERIZE_ABOVE,
            )
        )
        span = max((b[2] for b in bars), default=1.0) or 1.0
        ax.set_xlim(0, span * 1.01)
        ax.set_ylim(len(workers) - 0.5, -0.5)
        ax.set_yticks(range(len(workers)), [_short(w, 28) for w in workers], fontsize=label_size)
        ax.set_xlabel("seconds since the first trial started")
        ax.grid(True, axis="x", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        present = [s for s in STATUS_COLORS if any(b[3] == s for b in bars)]
        ax.legend(
            handles=[Patch(color=STATUS_COLORS[s], label=s) for s in present],
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncols=len(present),
            fontsize=8,
        )
        ax.set_title("trials per worker", loc="left")
        return _svg(fig, "timeline", "timeline of trials per worker, coloured by status")


# ------------------------------------------------------------------ learning curves


CURVE_COLORS = ("#2f6db3", "#e07b39", "#00798c", "#7a5195", "#66a182", "#edae49", "#8d96a3", "#ef5675")


def learning_curves(
    metric: str,
    groups: Sequence[tuple[str, Sequence[Sequence[tuple[float, float]]]]],
    x_label: str,
) -> str:
    """One thin line per trial, one colour per point (its repeats overlaid), and
    the point's mean curve drawn thick.

    ``groups`` are ``(point label, [trial curve, …])``; a curve is ``[(x, y), …]``.
    """
    from matplotlib.lines import Line2D  # deferred: matplotlib is slow to import; only when drawing

    with _rc():
        fig = _figure(11.0, 4.2, left=64, right=14, top=34, bottom=46)
        ax = fig.add_subplot()
        handles = []
        for i, (label, curves) in enumerate(groups):
            color = CURVE_COLORS[i % len(CURVE_COLORS)]
            for curve in curves:
                if curve:
                    xs, ys = zip(*curve)
                    ax.plot(xs, ys, color=color, linewidth=0.9, alpha=0.45)
            mean = _mean_curve(curves)
            if len(curves) > 1 and mean:
                xs, ys = zip(*mean)
                ax.plot(xs, ys, color=color, linewidth=2.2)
            handles.append(Line2D([], [], color=color, linewidth=2.2, label=_short(label, 40)))
        ax.set_xlabel(x_label)
        ax.set_ylabel(metric)
        ax.grid(True, color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        if len(handles) <= 12:
            ax.legend(handles=handles, fontsize=7, loc="best")
        ax.set_title(f"{metric} during each trial (thin: one trial; thick: the point's mean)", loc="left")
        return _svg(fig, f"curves-{metric}", f"learning curves of {metric}, per trial and per point")


def _mean_curve(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The mean over curves at each x that every curve has."""
    if not curves:
        return []
    common = set.intersection(*(set(x for x, _ in c) for c in curves))
    out = []
    for x in sorted(common):
        ys = [y for c in curves for cx, y in c if cx == x]
        out.append((x, sum(ys) / len(ys)))
    return out
