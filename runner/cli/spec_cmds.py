"""``xrun run``, ``xrun validate``, ``xrun plan``: commands that take a spec."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from runner import remote
from runner.cli.app import (
    SetOpt,
    SpecArg,
    _kv,
    _load,
    _say,
    _state,
    app,
    err,
    ignore_sigint_while_exiting,
    out,
)


@app.command()
def run(
    spec: Path = SpecArg,
    backend: str | None = typer.Option(None, "--backend", help="local | docker | kubernetes | address"),
    workers: int | None = typer.Option(None, "--workers", min=1, help="number of workers"),
    set_: list[str] = SetOpt,
    build_arg: list[str] = typer.Option([], "--build-arg", help="image build argument K=V; repeatable"),
    no_cache: bool = typer.Option(False, "--no-cache", help="run every trial, ignoring cached results"),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="stop at the first failed trial"),
    relock: bool = typer.Option(False, "--relock", help="lock the environment first if its lock is missing or stale"),
    output: Path | None = typer.Option(None, "--output", "-o", help="directory for the bundle (default: the spec's output)"),
) -> None:
    """Run every trial of SPEC's sweep and write a provenance bundle (its path is printed last).

    Exit codes: 0 all trials ok, 1 some failed, 2 bad spec or usage, 3 infrastructure, 130 interrupted (Ctrl-C).
    """
    from runner.run import RunOptions, check_result  # deferred: imports Dask
    from runner.run import run as run_spec  # deferred: imports Dask

    loaded = _load(spec, set_, backend, workers)
    options = RunOptions(
        use_cache=not no_cache, fail_fast=fail_fast, relock=relock,
        output=output.resolve() if output else None, build_args=_kv(build_arg, "--build-arg"),
    )  # fmt: skip
    from runner.cli.progress import Progress  # deferred: imports Dask

    progress = Progress(err, loaded, enabled=not _state["quiet"])
    options.on_event = progress.event
    options.on_status = progress.status
    if not _state["quiet"]:
        remote.progress_factory.set(progress.transfer)  # hashing large data URLs

    driver = os.getpid()

    def on_sigint(signum: int, frame: Any) -> None:
        if os.getpid() != driver:
            # A cluster process between fork and exec runs Python (at-fork
            # hooks, preexec_fn) with this handler; raising there prints a
            # traceback or fails the spawn. Its own session shields it soon.
            return
        if options.stop.is_set():
            raise KeyboardInterrupt
        options.stop.set()
        progress.status("[yellow]stopping: waiting for running trials (Ctrl-C again to cancel them)[/]")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with progress:
            result = run_spec(loaded, options)
    finally:
        signal.signal(signal.SIGINT, previous)
    if not _state["quiet"]:
        progress.summary(result)
    out.print(str(result.bundle))
    if result.status == "interrupted":
        ignore_sigint_while_exiting()
        raise typer.Exit(130)
    check_result(result)


# ------------------------------------------------------------------ validate / plan


@app.command()
def validate(spec: Path = SpecArg, set_: list[str] = SetOpt) -> None:
    """Check SPEC and report the first problem with file, line and key path."""
    from runner import sweep  # deferred: imports pydantic

    loaded = _load(spec, set_)
    s = loaded.spec
    _say(f"[green]✓[/] {loaded.display}: valid spec {s.name!r} — {sweep.count(s.sweep):,} trials, "
         f"{s.trial.kind} trial, {s.environment.kind} environment, {s.cluster.backend} backend")  # fmt: skip


@app.command()
def plan(
    spec: Path = SpecArg,
    set_: list[str] = SetOpt,
    backend: str | None = typer.Option(None, "--backend", help="local | docker | kubernetes | address (as `run --backend`)"),
    workers: int | None = typer.Option(None, "--workers", min=1, help="number of workers (as `run --workers`)"),
    no_cache: bool = typer.Option(False, "--no-cache"),
    json_: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Dry run: the trials, how many are cached and why the others are not."""
    from runner.env import check_lock  # deferred: imports the environment lockers
    from runner.plan import explain_misses, make_plan  # deferred: imports pydantic
    from runner.run import load_environment  # deferred: imports Dask

    loaded = _load(spec, set_, backend, workers)
    s = loaded.spec
    fresh, reason = check_lock(s.environment)
    from runner.cli.progress import transfer_bars  # deferred: imports Dask

    env = load_environment(loaded, relock=False)
    from runner.cache import TrialCache  # deferred: imports pydantic
    from runner.stage_run import describe  # deferred: imports Dask

    cache = TrialCache()
    with transfer_bars(err, enabled=not _state["quiet"]):  # hashing large data URLs
        p = make_plan(loaded, env, use_cache=not no_cache, cache=cache)
    search = None
    if s.sweep.adaptive:
        from runner.search import plan_search  # deferred: imports Optuna

        search = plan_search(p, cache)
    reasons = explain_misses(p, cache)
    stages = describe(p, cache)
    info = {
        "spec": loaded.display, "name": s.name, "trials": len(p.trials), "cached": p.n_cached,
        "reused_across_environments": p.n_reused, "to_run": len(p.pending), "why_not_cached": reasons,
        "stages": stages,
        "environment": {"kind": env.kind, "lock_hash": env.lock_hash, "lock": str(env.lock_file) if env.lock_file else None,
                        "fresh": fresh, "status": reason},
        "code": {"files": len(p.code.files), "hash": p.code.hash},
        "data": {k: v["sha256"] for k, v in p.data.items()},
        "backend": s.cluster.backend, "workers": s.cluster.workers,
        "image": "built (or reused) for this lock" if s.cluster.backend in ("docker", "kubernetes") else None,
        "search": search.progress() if search else None,
    }  # fmt: skip
    if json_:
        out.print_json(json.dumps(info))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("spec", f"{loaded.display} ({s.name})")
    if "prepare" in stages:
        table.add_row("prepare", stages["prepare"])
    table.add_row("trials", f"{len(p.trials):,}: {p.n_cached:,} cached, {len(p.pending):,} to run")
    if "final" in stages:
        table.add_row("final", stages["final"])
    if search:
        table.add_row("search", search.describe())
    if p.n_reused:
        table.add_row("", f"{p.n_reused:,} of the cached ran in another environment that differs only in "
                          "distributions they did not import")  # fmt: skip
    table.add_row("environment", f"{env.kind}, lock {env.lock_hash[:12]} — {reason}")
    table.add_row("code", f"{len(p.code.files)} files, hash {p.code.hash[:12]}")
    for k, v in p.data.items():
        if v["sha256"] is None:  # on the workers' volume only: hashed on a worker when the run starts
            table.add_row(f"data {k}", f"on the workers' volume at {v['volume']}: hashed on a worker before the sweep")
        else:
            table.add_row(f"data {k}", f"sha256 {v['sha256'][:12]}, {v.get('size') or '?'} bytes")
    table.add_row("cluster", f"{s.cluster.backend}, {s.cluster.workers} workers × {s.cluster.threads_per_worker} threads")
    if info["image"]:
        table.add_row("image", info["image"])
    out.print(table)
    for r in reasons:
        out.print(f"  not cached: {r}")
    preview = p.pending[:10]
    if preview:
        t = Table(title="next trials to run", title_justify="left")
        t.add_column("id")
        t.add_column("seed", justify="right")
        t.add_column("params")
        for tr in preview:
            t.add_row(tr.id, str(tr.point.seed), json.dumps(tr.point.params, sort_keys=True))
        out.print(t)
        if len(p.pending) > len(preview):
            out.print(f"  … and {len(p.pending) - len(preview):,} more")


# ------------------------------------------------------------------ bundles
