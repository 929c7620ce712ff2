"""The ``xrun`` command: parses, calls one core function, renders its result.

The only module that prints or imports typer/rich. Exit codes (DESIGN §3):
0 success, 1 the work ran but failed, 2 bad usage or spec, 3 infrastructure.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from runner import config
from runner.errors import UsageError, VerifyError, XrunError

app = typer.Typer(
    name="xrun",
    help="Declarative, reproducible experiment runner. `xrun SPEC` is `xrun run SPEC`.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
env_app = typer.Typer(help="Locked environments.", no_args_is_help=True)
app.add_typer(env_app, name="env")

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
_state: dict[str, Any] = {"quiet": False, "verbose": 0}

SpecArg = typer.Argument(..., help="the spec file (YAML)", show_default=False)
SetOpt = typer.Option([], "--set", help="override a spec value: KEY.PATH=VALUE (YAML-typed); repeatable")


@app.callback()
def _root(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the final result"),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="more detail (-vv: debug logs)"),
) -> None:
    _state["quiet"], _state["verbose"] = quiet, verbose
    if verbose < 2:  # read by dask's config when distributed is first imported
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("distributed", "tornado", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _say(text: str) -> None:
    if not _state["quiet"]:
        err.print(text)


def _load(spec: Path, overrides: list[str], backend: str | None = None, workers: int | None = None) -> Any:
    from runner.spec import load_spec

    sets = list(overrides)
    if backend:
        sets.append(f"cluster.backend={backend}")
    if workers is not None:
        sets.append(f"cluster.workers={workers}")
    loaded = load_spec(spec, sets)
    for warning in loaded.warnings:
        err.print(f"[yellow]warning:[/] {warning}")
    return loaded


def _kv(items: list[str], flag: str) -> dict[str, str]:
    outd = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        outd[k] = v
    return outd


# ------------------------------------------------------------------ run


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
    from runner.run import RunOptions, check_result
    from runner.run import run as run_spec

    loaded = _load(spec, set_, backend, workers)
    options = RunOptions(
        use_cache=not no_cache, fail_fast=fail_fast, relock=relock,
        output=output.resolve() if output else None, build_args=_kv(build_arg, "--build-arg"),
    )  # fmt: skip
    from runner.cli.progress import Progress

    progress = Progress(err, loaded, enabled=not _state["quiet"])
    options.on_event = progress.event
    options.on_status = progress.status

    def on_sigint(signum: int, frame: Any) -> None:
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
        raise typer.Exit(130)
    check_result(result)


# ------------------------------------------------------------------ validate / plan


@app.command()
def validate(spec: Path = SpecArg, set_: list[str] = SetOpt) -> None:
    """Check SPEC and report the first problem with file, line and key path."""
    from runner import sweep

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
    from runner.env import check_lock
    from runner.plan import explain_misses, make_plan
    from runner.run import load_environment

    loaded = _load(spec, set_, backend, workers)
    s = loaded.spec
    fresh, reason = check_lock(s.environment)
    env = load_environment(loaded, relock=False)
    p = make_plan(loaded, env, use_cache=not no_cache)
    reasons = explain_misses(p)
    info = {
        "spec": loaded.display, "name": s.name, "trials": len(p.trials), "cached": len(p.cached),
        "reused_across_environments": len(p.reused), "to_run": len(p.pending), "why_not_cached": reasons,
        "environment": {"kind": env.kind, "lock_hash": env.lock_hash, "lock": str(env.lock_file) if env.lock_file else None,
                        "fresh": fresh, "status": reason},
        "code": {"files": len(p.code.files), "hash": p.code.hash},
        "data": {k: v["sha256"] for k, v in p.data.items()},
        "backend": s.cluster.backend, "workers": s.cluster.workers,
        "image": "built (or reused) for this lock" if s.cluster.backend in ("docker", "kubernetes") else None,
    }  # fmt: skip
    if json_:
        out.print_json(json.dumps(info))
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("spec", f"{loaded.display} ({s.name})")
    table.add_row("trials", f"{len(p.trials):,}: {len(p.cached):,} cached, {len(p.pending):,} to run")
    if p.reused:
        table.add_row("", f"{len(p.reused):,} of the cached ran in another environment that differs only in "
                          "distributions they did not import")  # fmt: skip
    table.add_row("environment", f"{env.kind}, lock {env.lock_hash[:12]} — {reason}")
    table.add_row("code", f"{len(p.code.files)} files, hash {p.code.hash[:12]}")
    for k, v in p.data.items():
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


@app.command()
def show(bundle: Path = typer.Argument(..., help="a bundle directory or archive"), json_: bool = typer.Option(False, "--json")) -> None:
    """Summary of a bundle: status, counts, best trials, failures."""
    from runner._display import clean, mapping, safe, trial_rows
    from runner.bundle.read import effective_status, open_bundle, summary_row

    b = open_bundle(bundle)
    trials = b.trials
    if json_:
        out.print_json(json.dumps({**summary_row(b), "trials": trials}, default=str))
        return
    m = safe(b.meta)  # every string shown below comes from the bundle: escaped
    status, why = effective_status(b)
    out.print(f"[bold]{m.get('run_id')}[/]  status: {safe(status)}  backend: {m.get('backend')}  "
              f"duration: {m.get('duration_seconds')}s")  # fmt: skip
    if why:
        out.print(clean(f"abandoned: {why}; the trials it finished are kept (re-run the spec to finish the rest)"),
                  markup=False)  # fmt: skip
    if isinstance(b.meta.get("computed_by"), list):
        out.print(clean("all trials came from the cache; no cluster started. computed by: "
                        + ", ".join(map(str, b.meta["computed_by"]))), markup=False)  # fmt: skip
    c = mapping(m.get("counts"))
    out.print(f"trials: {c.get('total')} total, {c.get('ok', 0)} ok, {c.get('cached', 0)} cached, "
              f"{c.get('failed', 0)} failed, {c.get('not_run', 0)} not run")  # fmt: skip
    from runner.cli.progress import best_text, points_table, trials_table

    best = mapping(b.meta.get("best"))
    metric = best.get("metric") if isinstance(best.get("metric"), str) else None
    goal = "minimize" if best.get("goal") == "minimize" else "maximize"
    if metric:
        out.print(clean(f"best point: {best_text(best)}"), markup=False)
    out.print(trials_table(trial_rows(trials), metric, goal, limit=20))
    points = points_table([t for t in trials if isinstance(t, dict)], metric, goal, limit=20)
    if points is not None:
        out.print(points)


@app.command("ls")
def ls_(
    directory: Path = typer.Argument(Path("runs"), help="directory holding bundles"),
    all_: bool = typer.Option(False, "--all", "-a", help="also runs that failed before any trial started"),
    json_: bool = typer.Option(False, "--json"),
) -> None:
    """List the bundles in DIRECTORY (runs that failed before starting only with --all)."""
    from runner.bundle.read import find_bundles, summary_row
    from runner.cli.progress import runs_table

    rows = [summary_row(b) for b in find_bundles(directory)]
    hidden = [r for r in rows if r["failed_before_start"]] if not all_ else []
    rows = [r for r in rows if r not in hidden]
    if json_:
        out.print_json(json.dumps(rows, default=str))
        return
    out.print(runs_table(rows))
    if hidden:
        _say(f"{len(hidden)} run(s) that failed before any trial started are hidden: "
             f"`xrun ls --all` shows them, `xrun clean --runs {directory}` removes them")  # fmt: skip


@app.command()
def verify(bundle: Path = typer.Argument(..., help="a bundle directory or archive")) -> None:
    """Check every file of BUNDLE against its MANIFEST.sha256."""
    from runner.bundle.manifest import verify as verify_bundle
    from runner.bundle.read import open_bundle

    b = open_bundle(bundle)
    res = verify_bundle(b.root)
    if res.unsafe:
        raise VerifyError(f"{b.root}: {len(res.unsafe)} link(s) or special file(s); a bundle holds regular files only\n  "
                          + "\n  ".join(f"not a regular file: {p}" for p in res.unsafe))  # fmt: skip
    if res.manifest_missing:
        raise VerifyError(f"{b.root}: MANIFEST.sha256 is missing (the run did not finish writing its bundle)")
    if not res.ok:
        lines = [f"changed: {p}" for p in res.changed] + [f"missing: {p}" for p in res.missing] + [f"extra: {p}" for p in res.extra]
        raise VerifyError(f"{b.root}: {len(lines)} problem(s)\n  " + "\n  ".join(lines))
    from runner._display import safe

    _say(f"[green]✓[/] {safe(str(b.root))}: {res.checked} files match MANIFEST.sha256")


@app.command()
def reproduce(
    bundle: Path = typer.Argument(..., help="a bundle directory or a `xrun pack` archive"),
    trials: str = typer.Option("best", "--trials", help="best | all | N (the N best) | t00003,t00007"),
    backend: str | None = typer.Option(None, "--backend", help="run on another backend than recorded"),
    data: list[str] = typer.Option([], "--data", help="NAME=PATH for data not at its recorded path; repeatable"),
    build_arg: list[str] = typer.Option([], "--build-arg", help="image build argument K=V; repeatable"),
    output: Path | None = typer.Option(None, "--output", "-o", help="where the new bundle goes"),
) -> None:
    """Rebuild BUNDLE's environment, re-run its trials and compare every metric."""
    from runner.reproduce import mismatch_summary
    from runner.reproduce import reproduce as reproduce_bundle
    from runner.run import RunOptions

    options = RunOptions(output=output.resolve() if output else None, build_args=_kv(build_arg, "--build-arg"))
    data_paths = {k: Path(v).resolve() for k, v in _kv(data, "--data").items()}
    result = reproduce_bundle(bundle, trials=trials, backend=backend, data=data_paths, options=options)
    from runner._display import safe

    _say(f"environment: {safe(result.environment)}")
    t = Table(title=f"reproduction of {safe(str(result.original.meta.get('run_id')))}", title_justify="left")
    for col in ("trial", "metric", "recorded", "reproduced", "|Δ|", "match"):
        t.add_column(col, justify="right" if col in ("recorded", "reproduced", "|Δ|") else "left")
    for r in result.rows:
        t.add_row(safe(str(r.trial)), safe(str(r.metric)), _num(r.recorded), _num(r.reproduced), _num(r.delta),
                  "[green]yes[/]" if r.match else "[red]NO[/]")  # fmt: skip
    err.print(t)
    for p in result.problems:
        err.print(f"[red]problem:[/] {safe(p)}")
    _say("[green]verdict: match[/]" if result.ok else "[red]verdict: mismatch[/]")
    out.print(str(result.bundle))
    if not result.ok:
        raise VerifyError(mismatch_summary(result))


def _pm(mean: Any, std: Any) -> str:
    return _num(mean) + (f" ± {std:.3g}" if isinstance(std, float) else "")


def _num(v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


@app.command()
def diff(
    a: Path = typer.Argument(..., help="first bundle"),
    b: Path = typer.Argument(..., help="second bundle"),
    json_: bool = typer.Option(False, "--json"),
) -> None:
    """What differs between two bundles: environment, code, data, sweep, metrics."""
    from runner._display import safe
    from runner.bundle.diff import diff_bundles
    from runner.bundle.read import open_bundle

    d = diff_bundles(open_bundle(a), open_bundle(b))
    if json_:
        out.print_json(json.dumps(d, default=str))
        return
    d = safe(d)  # every string below comes from the two bundles
    out.print(f"[bold]A[/] {d['a']}\n[bold]B[/] {d['b']}")
    env = d["environment"]
    if env["lock_hash"][0] == env["lock_hash"][1]:
        out.print("environment: identical")
    else:
        out.print(f"environment: {env['kind'][0]} {str(env['lock_hash'][0])[:12]} → {env['kind'][1]} {str(env['lock_hash'][1])[:12]}")
        for line in env["packages"]:
            out.print(f"  {line}")
    for title, key in (("code", "code"), ("data", "data"), ("sweep and trial", "sweep"), ("backend and image", "infrastructure")):
        out.print(f"{title}: " + ("identical" if not d[key] else ""))
        for line in d[key]:
            out.print(f"  {line}")
    t = Table(title="metrics (ok trials; best = the best point's mean over its repeats, objective only)", title_justify="left")
    for col in ("metric", "A mean ± std", "B mean ± std", "A best", "B best", "A n", "B n"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for m in d["metrics"]:
        goal = f" ({m['goal']})" if m.get("goal") else ""
        t.add_row(str(m["metric"]) + goal, _pm(m["a_mean"], m.get("a_std")), _pm(m["b_mean"], m.get("b_std")),
                  _num(m["a_best"]), _num(m["b_best"]), str(m["a_n"]), str(m["b_n"]))  # fmt: skip
    out.print(t)


@app.command()
def pack(
    bundle: Path = typer.Argument(..., help="a bundle directory"),
    output: Path = typer.Option(..., "--output", "-o", help="the archive to write (.tar.gz)"),
) -> None:
    """Write BUNDLE as one deterministic .tar.gz (reproduce, verify and show accept it)."""
    from runner.bundle.pack import SUFFIXES
    from runner.bundle.pack import pack as pack_bundle
    from runner.bundle.read import open_bundle

    if not output.name.endswith(SUFFIXES):
        raise UsageError(f"--output {output}: the archive name must end with .tar.gz")
    b = open_bundle(bundle)
    path = pack_bundle(b.root, output, created=b.meta.get("created"))
    _say(f"packed {b.root.name} → {path}")
    out.print(str(path))


# ------------------------------------------------------------------ environments


@app.command()
def lock(
    spec: Path = SpecArg,
    set_: list[str] = SetOpt,
    check: bool = typer.Option(False, "--check", help="exit 1 if the lock is missing or stale, without locking"),
    upgrade: bool = typer.Option(False, "--upgrade", "-U", help="release every pin of the existing lock"),
    upgrade_package: list[str] = typer.Option([], "--upgrade-package", "-P", help="release NAME's pin; repeatable"),
) -> None:
    """(Re)lock SPEC's environment, or check that its lock is current.

    Versions the existing lock pins are kept while they still satisfy the
    environment file (as `uv lock` and `conda-lock` do); --upgrade and
    --upgrade-package NAME move them to the newest that fit."""
    from runner.env import check_lock, lock_env, pinned

    loaded = _load(spec, set_)
    env_spec = loaded.spec.environment
    if check:
        fresh, reason = check_lock(env_spec)
        if not fresh:
            err.print(f"[red]stale:[/] {reason}")
            raise typer.Exit(1)
        _say(f"[green]✓[/] {reason}")
        return
    before = pinned(env_spec)
    locked = lock_env(env_spec, upgrade=upgrade, upgrade_packages=upgrade_package)
    changed = [f"{n} {before[n]} → {v}" for n, v in sorted(locked.packages.items()) if n in before and before[n] != v]
    if changed:
        _say("  changed: " + ", ".join(changed))
    _say(f"[green]✓[/] locked {len(locked.packages)} packages → {locked.lock_file} (hash {locked.lock_hash[:12]})")
    if locked.added:
        _say(f"  added for the workers: {', '.join(locked.added)}")


@env_app.command("create")
def env_create(
    spec: Path = SpecArg,
    set_: list[str] = SetOpt,
    prefix: Path | None = typer.Option(None, "--prefix", help="where to create it (default: cached by lock hash)"),
) -> None:
    """Materialize SPEC's locked environment; prints its python executable."""
    from runner.env import create_env
    from runner.run import load_environment

    loaded = _load(spec, set_)
    env = load_environment(loaded)
    if env.kind == "current":
        raise UsageError(f"{loaded.where('environment')}: `current: true` uses this interpreter; there is nothing to create")
    python = create_env(env, prefix=prefix.resolve() if prefix else None)
    out.print(str(python))


# ------------------------------------------------------------------ images, clusters, reports


@app.command()
def build(
    spec: Path = SpecArg,
    set_: list[str] = SetOpt,
    push: bool = typer.Option(False, "--push", help="push to image.registry (needed by the kubernetes backend)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="rebuild even when an image for this lock exists"),
    build_arg: list[str] = typer.Option([], "--build-arg", help="build argument K=V (wins over image.build_args); repeatable"),
    json_: bool = typer.Option(False, "--json", help="print {image, image_id, env_layer_digest, cached, base}"),
) -> None:
    """Build SPEC's image hermetically (network off), cached by lock hash."""
    from runner.image import build_for_spec
    from runner.run import load_environment

    loaded = _load(spec, set_)
    env = load_environment(loaded)
    info = build_for_spec(loaded, env, build_args=_kv(build_arg, "--build-arg"), no_cache=no_cache, push=push)
    data = info.to_json()
    if json_:
        out.print_json(json.dumps({k: data[k] for k in ("image", "image_id", "env_layer_digest", "cached", "base")}))
        return
    _say(f"{'[green]cached[/]' if info.cached else '[green]built[/]'} {info.image}")
    _say(f"  image id          {info.image_id}\n  env layer digest  {info.env_layer_digest}\n  base              {info.base}")
    if info.pushed:
        _say(f"  pushed            {info.pushed}")
    out.print(info.image)


@app.command()
def manifests(
    spec: Path = SpecArg,
    set_: list[str] = SetOpt,
    output: Path | None = typer.Option(None, "--output", "-o", help="write one YAML file per object here"),
    image: str | None = typer.Option(None, "--image", help="the pushed image by digest (default: a placeholder)"),
) -> None:
    """Write the Kubernetes objects of a run of SPEC as YAML, without a cluster."""
    from runner.cluster.kubernetes import manifests_for_spec, to_yaml, write_manifests
    from runner.image import ENV_PYTHON

    objects = manifests_for_spec(_load(spec, set_).spec, image_ref=image, python=ENV_PYTHON)
    if output is None:
        sys.stdout.write(to_yaml(objects))
        return
    for path in write_manifests(objects, output):
        out.print(str(path))


@app.command()
def clean(
    directory: Path = typer.Argument(Path("runs"), help="with --runs: the directory holding bundles"),
    runs: bool = typer.Option(False, "--runs", help="remove bundles of runs that failed before any trial started"),
    run_id: str | None = typer.Option(None, "--run-id", help="only this run's leftovers"),
    kubernetes: bool = typer.Option(False, "--kubernetes", help="also require cleaning the Kubernetes cluster"),
    namespace: str | None = typer.Option(None, "--namespace", help="Kubernetes namespace (default: all xrun runs visible)"),
) -> None:
    """Remove containers, networks and cluster objects left by killed runs
    (with --runs: the bundles in DIRECTORY of runs that failed before starting)."""
    from runner.errors import InfraError

    if runs:
        from runner.bundle.read import remove_failed_before_start

        gone = remove_failed_before_start(directory)
        for path in gone:
            out.print(str(path), markup=False)
        _say(f"removed {len(gone)} bundle(s) of runs that failed before any trial started")
        return
    removed: list[str] = []
    try:
        from runner.cluster.docker import clean as docker_clean

        removed += docker_clean(run_id)
    except InfraError as exc:
        _say(f"[yellow]docker skipped:[/] {exc}")
    from runner.cluster import kubernetes as k8s

    if kubernetes or k8s.kubeconfig_available():
        try:
            removed += k8s.clean(namespace=namespace, run_id=run_id)
        except InfraError as exc:
            if kubernetes:
                raise
            _say(f"[yellow]kubernetes skipped:[/] {exc}")
    for name in removed:
        out.print(name, markup=False)
    _say(f"removed {len(removed)} object(s)")


@app.command()
def report(bundle: Path = typer.Argument(..., help="a bundle directory")) -> None:
    """(Re)write BUNDLE's report.html (and its RO-Crate metadata and manifest)."""
    from runner.bundle.read import open_bundle
    from runner.seal import reseal

    b = open_bundle(bundle)
    if b.root != Path(bundle) and not Path(bundle).is_dir():
        raise UsageError(f"{bundle}: an archive cannot be rewritten; unpack it or use the bundle directory")
    reseal(b.root)
    out.print(str(b.root / "report.html"))


@app.command()
def init(
    directory: Path = typer.Argument(Path("."), help="where to create the project"),
    name: str = typer.Option("my-sweep", "--name", help="the spec's name"),
) -> None:
    """Scaffold a project: a spec, experiments/train.py and an environment file."""
    from runner.scaffold import init as scaffold

    for path in scaffold(directory, name):
        out.print(str(path))
    _say(f"next: cd {directory} && xrun {name}.yaml")


# ------------------------------------------------------------------ entry point

COMMANDS = {"init", "run", "validate", "plan", "show", "ls", "verify", "lock", "env", "build", "manifests",
            "reproduce", "diff", "pack", "report", "clean", "--help", "-h", "--install-completion",
            "--show-completion"}  # fmt: skip


GLOBAL_FLAGS = {"-q", "--quiet", "-v", "--verbose", "-vv"}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    # -q/-v work anywhere on the line, as in pytest and uv.
    flags = [a for a in args if a in GLOBAL_FLAGS]
    args = flags + [a for a in args if a not in GLOBAL_FLAGS]
    # `xrun SPEC` is `xrun run SPEC`: the first argument that is not an option decides.
    first = next((a for a in args if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS:
        i = args.index(first)
        args = [*args[:i], "run", *args[i:]]
    try:
        # click reports usage errors itself (exit 2); our errors come out here.
        app(args=args, prog_name="xrun", standalone_mode=True)
    except XrunError as exc:
        if config.debug():
            raise
        from runner._display import clean

        err.print(f"error: {clean(exc.message)}", markup=False)  # messages quote bundle contents
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # a bug: say so, without a traceback unless asked
        if config.debug():
            raise
        from runner._display import clean

        err.print(f"internal error: {type(exc).__name__}: {clean(str(exc))} (set XRUN_DEBUG=1 for the traceback)", markup=False)
        sys.exit(1)

