"""``xrun lock``, ``env create``, ``build``, ``manifests``, ``clean``, ``init``: environments, images, clusters, projects."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from runner._display import safe
from runner.bundle.read import remove_failed_before_start
from runner.cli.app import SetOpt, SpecArg, _kv, _load, _say, app, env_app, err, out
from runner.errors import InfraError, UsageError
from runner.scaffold import init as scaffold


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
    from runner.env import check_lock, lock_env, pinned  # deferred: imports the environment lockers

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
    from runner.env import create_env  # deferred: imports the environment lockers
    from runner.run import load_environment  # deferred: imports Dask

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
    from runner.image import build_for_spec  # deferred: imports the image builder
    from runner.run import load_environment  # deferred: imports Dask

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
    from runner.cluster.kubernetes import (  # deferred: imports kr8s
        manifests_for_spec,
        to_yaml,
        write_manifests,
    )
    from runner.image import ENV_PYTHON  # deferred: imports the image builder

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
    data_cache: bool = typer.Option(False, "--data-cache", help="empty this machine's cache of fetched data (entries in use stay)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="with --data-cache: only list what would be removed"),
) -> None:
    """Remove containers, networks and cluster objects left by killed runs
    (with --runs: the bundles in DIRECTORY of runs that failed before starting;
    with --data-cache: this machine's cache of fetched data)."""
    if dry_run and not data_cache:
        raise UsageError("--dry-run goes with --data-cache")
    if data_cache:
        from runner.remote import clean_data_cache  # deferred: only for this option

        cleaned = clean_data_cache(dry_run=dry_run)
        for path, size in cleaned.removed:
            out.print(f"{path} ({size:,} bytes)", markup=False)
        freed = sum(size for _, size in cleaned.removed)
        verb = "would remove" if dry_run else "removed"
        busy = f"; {len(cleaned.in_use)} in use, left alone" if cleaned.in_use else ""
        _say(f"{verb} {len(cleaned.removed)} data cache entr{'y' if len(cleaned.removed) == 1 else 'ies'} "
             f"({freed:,} bytes) in {safe(str(cleaned.root))}{busy}")  # fmt: skip
        return
    if runs:
        gone = remove_failed_before_start(directory)
        for path in gone:
            out.print(str(path), markup=False)
        _say(f"removed {len(gone)} bundle(s) of runs that failed before any trial started")
        return
    removed: list[str] = []
    try:
        from runner.cluster.docker import clean as docker_clean  # deferred: imports the docker SDK

        removed += docker_clean(run_id)
    except InfraError as exc:
        _say(f"[yellow]docker skipped:[/] {exc}")
    from runner.cluster import kubernetes as k8s  # deferred: imports kr8s and the docker SDK

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
def init(
    directory: Path = typer.Argument(Path("."), help="where to create the project"),
    name: str = typer.Option("my-sweep", "--name", help="the spec's name"),
) -> None:
    """Scaffold a project: a spec, experiments/train.py and an environment file."""
    for path in scaffold(directory, name):
        out.print(str(path))
    _say(f"next: cd {directory} && xrun {name}.yaml")


# ------------------------------------------------------------------ entry point
