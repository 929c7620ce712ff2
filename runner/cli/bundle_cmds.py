"""``xrun show``, ``ls``, ``verify``, ``reproduce``, ``diff``, ``pack``, ``report``: commands that take bundles."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from runner import remote
from runner._display import clean, mapping, safe
from runner.bundle.manifest import verify as verify_bundle
from runner.bundle.read import effective_status, find_bundles, open_bundle, summary_row
from runner.bundle.stored import data_urls, stored_artifacts, verify_data_urls, verify_stored
from runner.cli.app import _kv, _say, app, err, out
from runner.errors import UsageError, VerifyError


@app.command()
def show(bundle: str = typer.Argument(..., help="a bundle directory or archive (a path or an s3://, gs://, az://, https:// URL)"), json_: bool = typer.Option(False, "--json")) -> None:
    """Summary of a bundle: status, counts, best trials, failures."""
    b = open_bundle(bundle)
    if json_:
        out.print_json(json.dumps({**summary_row(b), "trials": b.trials}, default=str))
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
              + (f"{c['pruned']} stopped early (pruned), " if isinstance(c.get("pruned"), int) and c["pruned"] else "")
              + f"{c.get('failed', 0)} failed, {c.get('not_run', 0)} not run")  # fmt: skip
    from runner.cli.progress import best_text, glance_tables  # deferred: imports Dask

    best = mapping(b.meta.get("best"))
    metric = best.get("metric") if isinstance(best.get("metric"), str) else None
    goal = "minimize" if best.get("goal") == "minimize" else "maximize"
    if metric:
        out.print(clean(f"best point: {best_text(best)}"), markup=False)
    try:  # the trials shown read in bounded memory, whatever the number of trials
        tables = glance_tables(b.root / "trials.jsonl", metric, goal, limit=20)
    except OSError as exc:
        raise UsageError(f"{b.root}: trials.jsonl: {exc}") from None
    for table in tables:
        out.print(table)
    from runner.cli.progress import stage_lines  # deferred: imports Dask

    for line in stage_lines(b.root):
        out.print(line, markup=False)


@app.command("ls")
def ls_(
    directory: Path = typer.Argument(Path("runs"), help="directory holding bundles"),
    all_: bool = typer.Option(False, "--all", "-a", help="also runs that failed before any trial started"),
    json_: bool = typer.Option(False, "--json"),
) -> None:
    """List the bundles in DIRECTORY (runs that failed before starting only with --all)."""
    from runner.cli.progress import runs_table  # deferred: imports Dask

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
def verify(
    bundle: str = typer.Argument(..., help="a bundle directory or archive (a path or an s3://, gs://, az://, https:// URL)"),
    remote_: bool = typer.Option(False, "--remote", help="also re-hash the data URLs and the artifacts kept in the artifact store"),
) -> None:
    """Check every file of BUNDLE against its MANIFEST.sha256 (--remote: and its data URLs and stored artifacts)."""
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

    _say(f"[green]✓[/] {safe(str(b.root))}: {res.checked} files match MANIFEST.sha256")
    if remote_:
        urls = verify_data_urls(b.root)
        _say(f"[green]✓[/] {len(urls)} data URL(s) match their sha256 where they are kept")
        checked = verify_stored(b.root)
        _say(f"[green]✓[/] {len(checked)} stored artifact(s) match their sha256 where they are kept")
    else:
        if stored := stored_artifacts(b.root):
            _say(f"{len(stored)} artifact(s) are kept in the artifact store; `--remote` re-hashes them there")
        try:
            urls = data_urls(b.root)
        except VerifyError:  # --remote says what is wrong with them; the files themselves verified
            urls = []
        if urls:
            _say(f"{len(urls)} data URL(s) are kept where they are; `--remote` re-hashes them there")


@app.command()
def reproduce(
    bundle: str = typer.Argument(..., help="a bundle directory or a `xrun pack` archive (a path or a URL)"),
    trials: str = typer.Option("best", "--trials", help="best | all | N (the N best) | t00003,t00007"),
    backend: str | None = typer.Option(None, "--backend", help="run on another backend than recorded"),
    data: list[str] = typer.Option([], "--data", help="NAME=PATH for data not at its recorded path; repeatable"),
    build_arg: list[str] = typer.Option([], "--build-arg", help="image build argument K=V; repeatable"),
    output: Path | None = typer.Option(None, "--output", "-o", help="where the new bundle goes"),
) -> None:
    """Rebuild BUNDLE's environment, re-run its trials and compare every metric."""
    from runner.reproduce import mismatch_summary  # deferred: imports Dask
    from runner.reproduce import reproduce as reproduce_bundle  # deferred: imports Dask
    from runner.run import RunOptions  # deferred: imports Dask

    options = RunOptions(output=output.resolve() if output else None, build_args=_kv(build_arg, "--build-arg"))
    data_paths = {k: Path(v).resolve() for k, v in _kv(data, "--data").items()}
    result = reproduce_bundle(bundle, trials=trials, backend=backend, data=data_paths, options=options)

    _say(f"environment: {safe(result.environment)}")
    if result.search:
        _say(f"search: {safe(result.search)}")
    t = Table(title=f"reproduction of {safe(str(result.original.meta.get('run_id')))}", title_justify="left")
    for col in ("trial", "metric", "recorded", "reproduced", "|Δ|", "match"):
        t.add_column(col, justify="right" if col in ("recorded", "reproduced", "|Δ|") else "left")
    for r in result.rows:
        t.add_row(safe(str(r.trial)), safe(str(r.metric)), _num(r.recorded), _num(r.reproduced), _num(r.delta),
                  "[green]yes[/]" if r.match else "[red]NO[/]")  # fmt: skip
    err.print(t)
    for st in result.stages:  # prepare / final: by sha256, else by metrics within tolerance
        how = "same sha256" if st["by"] == "sha256" and st["match"] else f"compared by {st['by']}"
        err.print(f"{safe(st['stage'])} stage: {'[green]match[/]' if st['match'] else '[red]MISMATCH[/]'} ({how})")
    if result.artifacts:
        same = sum(a["match"] for a in result.artifacts)
        _say(f"stored artifacts: {same} of {len(result.artifacts)} reproduced with the same sha256")
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
    from runner.bundle.diff import diff_bundles  # deferred: imports pydantic
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
    output: str = typer.Option(..., "--output", "-o", help="the archive to write (.tar.gz): a path, or an s3://, gs://, az:// URL"),
) -> None:
    """Write BUNDLE as one deterministic .tar.gz (reproduce, verify and show accept it)."""
    from runner.bundle import pack as packing  # deferred: imports Dask (safe archive extraction)

    SUFFIXES, pack_bundle = packing.SUFFIXES, packing.pack
    if not output.endswith(SUFFIXES):
        raise UsageError(f"--output {output}: the archive name must end with .tar.gz")
    b = open_bundle(bundle)
    if remote.is_url(output):
        if problem := remote.writable(output):
            raise UsageError(f"--output {problem}")
        with tempfile.TemporaryDirectory(prefix="xrun-pack-") as tmp:
            path = pack_bundle(b.root, Path(tmp) / "bundle.tar.gz", created=b.meta.get("created"))
            remote.upload(path, output)
        _say(f"packed {b.root.name} → {output}")
        out.print(output)
        return
    path = pack_bundle(b.root, Path(output), created=b.meta.get("created"))
    _say(f"packed {b.root.name} → {path}")
    out.print(str(path))


# ------------------------------------------------------------------ environments


@app.command()
def report(bundle: Path = typer.Argument(..., help="a bundle directory")) -> None:
    """(Re)write BUNDLE's report.html (and its RO-Crate metadata and manifest)."""
    from runner.seal import reseal  # deferred: imports the report and RO-Crate code

    b = open_bundle(bundle)
    if b.root != Path(bundle) and not Path(bundle).is_dir():
        raise UsageError(f"{bundle}: an archive cannot be rewritten; unpack it or use the bundle directory")
    reseal(b.root)
    out.print(str(b.root / "report.html"))
