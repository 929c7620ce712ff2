"""Terminal display for the CLI: live progress from execute's events, tables."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table

from runner._display import safe, trial_rows
from runner.execute import Event


class Progress:
    """A rich progress bar: done/total, failed, cached, ETA and best so far."""

    def __init__(self, console: Console, loaded: Any, enabled: bool = True) -> None:
        from runner import sweep

        self.console = console
        self.enabled = enabled
        self.total = sweep.count(loaded.spec.sweep)
        obj = loaded.spec.sweep.objective
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

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def status(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)

    def event(self, e: Event) -> None:
        if e.kind == "retry":
            if self.enabled:
                self.bar.console.print(f"[yellow]retry[/] {e.record['id']}: {safe(str(e.record.get('error')))}", markup=True)
            return
        if e.kind == "failed" and self.enabled:
            first = (e.record.get("error") or "").splitlines()[0:1]
            self.bar.console.print(f"[red]{e.record.get('failure_class')}[/] {e.record['id']}: {safe(first[0]) if first else ''}")
        c = e.counts
        extra = f"[red]{c['failed']} failed[/] " if c["failed"] else ""
        extra += f"{c['cached']} cached " if c["cached"] else ""
        if e.best:
            metric = self.metric or "best"
            extra += f"best {metric}={e.best[1]:.4g} ({e.best[0]})"
        self.bar.update(self.task, advance=1, extra=extra)

    def summary(self, result: Any) -> None:
        import json as _json

        c = result.outcome.counts
        color = {"ok": "green", "failed": "red", "interrupted": "yellow", "error": "red"}.get(result.status, "white")
        self.console.print(
            f"[{color}]{result.status}[/]: {result.total} trials — {c['ok']} ran, {c['cached']} cached, "
            f"{c['failed']} failed, {result.outcome.not_run} not run — {result.duration:.1f}s"
        )
        trials = _read_trials(result.bundle)
        objective = None
        meta = _json.loads((result.bundle / "bundle.json").read_text())
        if meta.get("best"):
            objective = meta["best"]
            self.console.print(f"best: {objective['trial']} {objective['metric']}={objective['value']:.6g}")
        self.console.print(trials_table(trial_rows(trials), objective and objective["metric"], (objective or {}).get("goal", "maximize"), limit=10))


def _read_trials(bundle: Any) -> list[dict[str, Any]]:
    from runner.bundle.write import latest_records, read_journal

    return latest_records(read_journal(bundle / "trials.jsonl", slim=True))


def trials_table(trials: list[dict[str, Any]], metric: str | None, goal: str = "maximize", limit: int = 20) -> Table:
    """Best trials first (by ``metric``), then failures with their messages."""
    ok = [t for t in trials if t.get("status") == "ok"]
    failed = [t for t in trials if t.get("status") != "ok"]
    if metric:
        sign = -1 if goal == "maximize" else 1
        ok.sort(key=lambda t: (sign * t["metrics"][metric]) if isinstance(t["metrics"].get(metric), (int, float)) else float("inf"))
    metrics = sorted({m for t in ok for m in t.get("metrics", {})})
    if metric in metrics:
        metrics.remove(metric)
        metrics.insert(0, metric)
    metrics = metrics[:4]
    table = Table(title=f"trials (best {metric} first)" if metric else "trials", title_justify="left")
    table.add_column("id")
    table.add_column("status")
    table.add_column("params")
    for m in metrics:
        table.add_column(m, justify="right")
    if failed:
        table.add_column("error")
    pad = [""] if failed else []
    for t in ok[:limit]:
        status = "cached" if t.get("cached") else "ok"
        table.add_row(t["id"], status, _params(t.get("params", {})),
                      *[_fmt(t["metrics"].get(m)) for m in metrics], *pad)  # fmt: skip
    if len(ok) > limit:
        table.add_row("…", f"{len(ok) - limit} more", "", *["" for _ in metrics], *pad)
    for t in failed[:limit]:
        msg = (t.get("error") or "").splitlines()[0] if t.get("error") else ""
        table.add_row(t["id"], f"[red]{t.get('failure_class') or t.get('status')}[/]",
                      _params(t.get("params", {})), *["" for _ in metrics], msg[:100])  # fmt: skip
    return table


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v) if isinstance(v, float) else json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(params.items()))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
