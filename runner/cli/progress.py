"""Terminal display for the CLI: live progress from execute's events, tables."""

from __future__ import annotations

import json
import json as _json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table

from runner import remote
from runner._display import clean, mapping, safe, trial_rows
from runner.bundle.glance import GLANCE_ROWS, Glance, glance
from runner.bundle.points import Point, aggregate, rank
from runner.execute import Event
from runner.objective import Objective, objective_of

UPDATE_SECONDS = 0.1


class Progress:
    """A rich progress bar: done/total, failed, cached, ETA and best so far."""

    def __init__(self, console: Console, loaded: Any, enabled: bool = True) -> None:
        from runner import sweep  # deferred: imports pydantic

        self.console = console
        self.enabled = enabled
        self.total = sweep.count(loaded.spec.sweep)
        obj = objective_of(loaded.spec)
        self.metric = obj.metric if obj else None
        self.bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            refresh_per_second=4,
            disable=not enabled,
        )
        self.task = self.bar.add_task("trials", total=self.total, extra="")
        self.done = 0
        # The bar is redrawn 4 times a second: trials are counted here and
        # given to it at most every UPDATE_SECONDS (thousands end per second).
        self._unshown = 0
        self._last: Event | None = None
        self._shown_at = 0.0

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._show()
        self.bar.__exit__(*exc)

    def status(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)

    def transfer(self, label: str, total: int | None) -> tuple[Callable[[int], None], Callable[[], None]]:
        """A row of this bar for hashing or moving a large remote object (counted in MiB)."""
        task = self.bar.add_task(f"{safe(label)} (MiB)", total=None if total is None else round(total / 2**20, 1), extra="")
        return (lambda n: self.bar.advance(task, n / 2**20)), (lambda: self.bar.remove_task(task))

    def event(self, e: Event) -> None:
        if e.kind == "retry":
            if self.enabled:
                self.bar.console.print(f"[yellow]retry[/] {e.record['id']}: {safe(str(e.record.get('error')))}", markup=True)
            return
        if e.kind == "failed" and self.enabled:
            first = (e.record.get("error") or "").splitlines()[0:1]
            self.bar.console.print(f"[red]{e.record.get('failure_class')}[/] {e.record['id']}: {safe(first[0]) if first else ''}")
        self._unshown += 1
        self._last = e
        now = time.monotonic()
        if e.kind == "failed" or now - self._shown_at >= UPDATE_SECONDS:
            self._shown_at = now
            self._show()

    def _show(self) -> None:
        e = self._last
        if e is None or not self._unshown:
            return
        advance, self._unshown = self._unshown, 0
        c = e.counts
        extra = f"[red]{c['failed']} failed[/] " if c["failed"] else ""
        extra += f"{c['cached']} cached " if c["cached"] else ""
        extra += f"{c['pruned']} pruned " if c.get("pruned") else ""
        if e.best:
            metric = self.metric or "best"
            extra += f"best {metric}={e.best[1]:.4g} ({e.best[0]})"
        self.bar.update(self.task, advance=advance, extra=extra)

    def summary(self, result: Any) -> None:
        c = result.outcome.counts
        color = {"ok": "green", "failed": "red", "interrupted": "yellow", "error": "red"}.get(result.status, "white")
        self.console.print(
            f"[{color}]{result.status}[/]: {result.total} trials — {c['ok']} ran, {c['cached']} cached, "
            + (f"{c['pruned']} stopped early (pruned), " if c.get("pruned") else "")
            + f"{c['failed']} failed, {result.outcome.not_run} not run — {result.duration:.1f}s"
        )
        objective = None
        meta = _json.loads((result.bundle / "bundle.json").read_text())
        if meta.get("computed_by"):
            self.console.print(f"all {result.total} trials cached; no cluster started "
                               f"(computed by {', '.join(meta['computed_by'])})", markup=False)  # fmt: skip
        if meta.get("best"):
            objective = meta["best"]
            self.console.print(f"best: {clean(best_text(objective))}", markup=False)
        metric, goal = objective and objective["metric"], (objective or {}).get("goal", "maximize")
        for table in glance_tables(result.bundle / "trials.jsonl", metric, goal, limit=GLANCE_ROWS, glanced=result.glance):
            self.console.print(table)
        for line in stage_lines(result.bundle):
            self.console.print(line, markup=False)


def stage_lines(bundle: Any) -> list[str]:
    """One line per prepare / final stage of a bundle (its files come from anyone: cleaned)."""
    try:
        stages = json.loads((bundle / "stages.json").read_text())
    except (OSError, ValueError):
        return []
    out = []
    for name in ("prepare", "final"):
        rec = stages.get(name) if isinstance(stages, dict) else None
        if not isinstance(rec, dict):
            continue
        if rec.get("status") == "ok":
            how = "cached" if rec.get("cached") else "ran"
            metrics: dict[str, Any] = rec["metrics"] if isinstance(rec.get("metrics"), dict) else {}
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(metrics.items())[:6])
            out.append(f"{name}: {how}" + (f" — {shown}" if shown else ""))
            files: dict[str, Any] = rec["files"] if isinstance(rec.get("files"), dict) else {}
            if name == "final":
                out += [f"  {rec.get('dir')}/{rel}  sha256 {str(sha)[:16]}…" for rel, sha in sorted(files.items())[:5]]
        else:
            out.append(f"{name}: {rec.get('status')} — {rec.get('error') or rec.get('reason') or ''}")
    return [clean(line) for line in out]


def glance_tables(journal: Any, metric: str | None, goal: str = "maximize", limit: int = 20,
                  glanced: Glance | None = None) -> list[Table]:  # fmt: skip
    """The trials table, and the points table when a point ran more than once,
    of a journal read in bounded memory (runner.bundle.glance; ``glanced``: what it gave already)."""
    g = glanced if glanced is not None else glance(journal, metric, goal, limit)
    tables = [trials_table(trial_rows(g.rows), metric, goal, limit, totals=(g.n_ok, g.n_pruned),
                           metric_names={safe(m) for m in g.shown_metrics})]  # fmt: skip
    if g.points is not None:
        tables.append(ranked_points_table(g.points, g.n_points, metric, limit, metric_names=g.numeric_metrics))
    return tables


def trials_table(trials: list[dict[str, Any]], metric: str | None, goal: str = "maximize", limit: int = 20,
                 totals: tuple[int, int] | None = None, metric_names: set[str] | None = None) -> Table:  # fmt: skip
    """Best trials first (by ``metric``), then trials stopped early (adaptive
    sweeps: their last values), then failures with their messages
    (``totals``, ``metric_names``: the numbers of successful and stopped-early
    trials and the successful ones' metric names, when ``trials`` holds only those shown)."""
    ok = [t for t in trials if t.get("status") == "ok"]
    pruned = [t for t in trials if t.get("status") == "pruned"]
    failed = [t for t in trials if t.get("status") not in ("ok", "pruned")]
    if metric:
        ok = [dict(t) for t in Objective(metric, goal).rank(ok)]
    metrics = sorted(metric_names if metric_names is not None else {m for t in ok for m in t.get("metrics", {})})
    if metric in metrics:
        metrics.remove(metric)
        metrics.insert(0, metric)
    metrics = metrics[:4]
    table = Table(title=f"trials (best {metric} first)" if metric else "trials", title_justify="left")
    _whole(table, "id", [t.get("id") for t in ok[:limit] + pruned[:limit] + failed[:limit]])  # the rows shown
    table.add_column("status", no_wrap=True)
    table.add_column("params", overflow="fold", ratio=1)
    for m in metrics:
        table.add_column(m, justify="right", no_wrap=True)
    if failed:
        table.add_column("error", overflow="fold", ratio=1)
    pad = [""] if failed else []
    for t in ok[:limit]:
        status = "cached" if t.get("cached") else "ok"
        table.add_row(t["id"], status, _params(t.get("params", {})),
                      *[_fmt(t["metrics"].get(m)) for m in metrics], *pad)  # fmt: skip
    n_ok, n_pruned = totals or (len(ok), len(pruned))
    if n_ok > limit:
        table.add_row("…", f"{n_ok - limit} more", "", *["" for _ in metrics], *pad)
    for t in pruned[:limit]:
        table.add_row(t["id"], "[yellow]pruned[/]", _params(t.get("params", {})),
                      *[_fmt(t["metrics"].get(m)) for m in metrics], *pad)  # fmt: skip
    if n_pruned > limit:
        table.add_row("…", f"{n_pruned - limit} more pruned", "", *["" for _ in metrics], *pad)
    for t in failed[:limit]:
        msg = (t.get("error") or "").splitlines()[0] if t.get("error") else ""
        table.add_row(t["id"], f"[red]{t.get('failure_class') or t.get('status')}[/]",
                      _params(t.get("params", {})), *["" for _ in metrics], msg[:100])  # fmt: skip
    return table


def _whole(table: Table, header: str, values: list[Any]) -> None:
    """A column that tells rows apart: never cut, never wrapped."""
    width = max([len(header)] + [len(str(v)) for v in values if v is not None])
    table.add_column(header, no_wrap=True, min_width=width)


def _pm(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return ""
    return f"{mean:.4g} ± {std:.2g}" if std is not None else f"{mean:.4g}" + (" (n=1)" if n == 1 else "")


def best_text(best: dict[str, Any]) -> str:
    """``bundle.json``'s best point in one line: mean ± std over its repeats."""
    value = best.get("value")
    text = f"{best.get('metric')}={value:.6g}" if isinstance(value, (int, float)) else f"{best.get('metric')}=?"
    if isinstance(best.get("std"), (int, float)):
        text += f" ± {best['std']:.3g}"
    if best.get("n") is not None:
        text += f" (mean of {best['n']})" if best["n"] != 1 else " (n=1)"
    params = best.get("params")
    if isinstance(params, dict) and params:
        text += f" at {_params(params)}"
    return text + f"; best trial {best.get('trial')}"


def points_table(trials: list[dict[str, Any]], metric: str | None, goal: str = "maximize", limit: int = 20) -> Table | None:
    """Parameter points with repeats: n, mean ± std per metric, best mean first;
    ``None`` when no point was run more than once."""
    points = aggregate(trials)
    if not any(len(p.trials) > 1 for p in points):
        return None
    return ranked_points_table(rank(points, metric, goal), len(points), metric, limit)


def ranked_points_table(ranked: list[Point], n_points: int, metric: str | None, limit: int = 20,
                        metric_names: set[str] | None = None) -> Table:  # fmt: skip
    """The points table of the first of ``rank(points)`` (``ranked``, at least
    ``limit`` of them or all), out of ``n_points`` (``metric_names``: of them all)."""
    metrics = sorted(metric_names if metric_names is not None else {m for p in ranked for m in p.values})
    if metric in metrics:
        metrics.remove(metric)
        metrics.insert(0, metric)
    metrics = metrics[:4]
    table = Table(title=f"points (mean ± std over repeats, best mean {metric} first)" if metric else "points",
                  title_justify="left")  # fmt: skip
    table.add_column("params", overflow="fold", ratio=1)
    table.add_column("n", justify="right", no_wrap=True)
    for m in metrics:
        table.add_column(safe(m), justify="right", no_wrap=True)
    spans = [safe(f"{p.trials[0]}…{p.trials[-1]}" if len(p.trials) > 1 else p.trials[0]) for p in ranked[:limit]]
    _whole(table, "trials", spans)
    for p, span in zip(ranked[:limit], spans):
        table.add_row(safe(_params(p.params)), f"{p.n}/{len(p.trials)}",
                      *[_pm(p.mean(m), p.std(m), len(p.values.get(m, []))) for m in metrics], span)  # fmt: skip
    if n_points > limit:
        table.add_row(f"… {n_points - limit} more", "", *["" for _ in metrics], "")
    return table


def runs_table(rows: list[dict[str, Any]]) -> Table:
    """``xrun ls``: run ids whole; the rest wraps (every value from a bundle made display-safe)."""
    t = Table()
    _whole(t, "run id", [r.get("run_id") for r in rows])
    t.add_column("status", no_wrap=True)
    t.add_column("trials", overflow="fold")
    t.add_column("best", overflow="fold", ratio=1)
    colors = {"ok": "green", "failed": "red", "error": "red", "abandoned": "yellow", "interrupted": "yellow", "running": "cyan"}
    for r in rows:
        c = mapping(r.get("counts"))
        parts = [f"{c.get(k)} {k}" for k in ("ok", "cached", "pruned", "failed", "not_run") if c.get(k)]
        trials = f"{c.get('total', '?')}" + (f": {', '.join(parts)}" if parts else "")
        best = r.get("best")
        status = str(r.get("status"))
        color = colors.get(status, "white")
        t.add_row(safe(str(r.get("run_id"))), f"[{color}]{safe(status)}[/]", safe(trials.replace("not_run", "not run")),
                  safe(best_text(best)) if isinstance(best, dict) and best.get("metric") else "")  # fmt: skip
    return t


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v) if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(params.items()))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


@contextmanager
def transfer_bars(console: Console, enabled: bool = True) -> Iterator[None]:
    """Progress bars for hashing and moving large remote objects outside a run."""
    if not enabled:
        yield
        return
    bars = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=console, transient=True)  # fmt: skip

    def factory(label: str, total: int | None) -> tuple[Callable[[int], None], Callable[[], None]]:
        task = bars.add_task(safe(label), total=total)
        return (lambda n: bars.advance(task, n)), (lambda: bars.remove_task(task))

    token = remote.progress_factory.set(factory)
    try:
        with bars:
            yield
    finally:
        remote.progress_factory.reset(token)
