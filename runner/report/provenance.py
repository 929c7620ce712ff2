"""Report sections about what went wrong and what it ran on: failures, environment,
and the verdict of a reproduction."""

from __future__ import annotations

from typing import Any

from runner.report import html as h
from runner.report.data import Run, params_text, worker_label

MAX_FAILURE_ROWS = 200
MAX_REPRODUCE_ROWS = 500
KEY_PACKAGES = (
    "xrun",
    "dask",
    "distributed",
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "torch",
    "tensorflow",
    "jax",
    "xgboost",
    "lightgbm",
    "statsmodels",
    "pydantic",
    "cloudpickle",
)


def failures_section(run: Run) -> str:
    s = run.scan
    failed = run.failed  # the first ones by id
    not_run = (run.meta.get("counts") or {}).get("not_run") or 0
    parts = []
    if not s.n_failed:
        parts.append('<p class="note">No trial failed.</p>')
    else:
        pills = "".join(
            f'<span class="pill">{h.badge(c)} <b>{n}</b></span>' for c, n in sorted(s.classes.items())
        )
        if s.other_classes:
            pills += f'<span class="pill">{h.badge("other")} <b>{s.other_classes}</b></span>'
        parts.append(f'<div class="pill-list">{pills}</div>')
        parts.append(_failure_groups(run))
        table = _failure_table(failed[:MAX_FAILURE_ROWS])
        more = (
            f'<p class="note">… and {s.n_failed - MAX_FAILURE_ROWS} more in trials.jsonl.</p>'
            if s.n_failed > MAX_FAILURE_ROWS
            else ""
        )
        open_ = " open" if s.n_failed <= 20 else ""
        parts.append(
            f"<details{open_}><summary>Each failed trial ({s.n_failed}), with its traceback"
            f"</summary>{table}{more}</details>"
        )
        parts.append(
            '<p class="note">Each trial\'s full output is in <code>logs/&lt;trial&gt;.log</code>.</p>'
        )
    if not_run:
        why = run.meta.get("stopped") or run.meta.get("status")
        parts.append(f'<p class="note">{h.esc(not_run)} trials did not run ({h.esc(why)}).</p>')
    return "\n".join(parts)


def _failure_class(t: dict[str, Any]) -> str:
    return str(t.get("failure_class") or t.get("status") or "error")


def _failure_groups(run: Run) -> str:
    """One row per (class, message): the same error in many trials reads once."""
    s = run.scan
    ordered = sorted(s.groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
    rows = []
    for (cls, msg), (count, first) in ordered[:50]:
        ids = first.result()
        shown = ", ".join(ids[:8]) + (", …" if count > 8 else "")
        rows.append(
            [
                h.Cell(h.badge(cls)),
                h.Cell(h.esc(msg) or "—", None, "err"),
                h.num(count),
                h.text(shown, "mono"),
            ]
        )
    out = h.table(
        ["class", "message", "trials", "which"], rows, numeric=[False, False, True, False]
    )
    if len(ordered) > 50:
        out += f'<p class="note">… and {len(ordered) - 50} more distinct messages.</p>'
    if s.other_groups:
        out += (f'<p class="note">{s.other_groups} more failed trials are counted above but not grouped by message '
                f"(only the first {len(ordered)} distinct messages are).</p>")  # fmt: skip
    return out


def _failure_table(failed: list[dict[str, Any]]) -> str:
    rows = []
    for t in failed:
        msg = str(t.get("error") or "")
        first, _, rest = msg.partition("\n")
        cell = h.esc(first)
        tb = t.get("traceback") or rest
        if tb:
            cell += f"<details><summary>traceback</summary><pre>{h.esc(tb)}</pre></details>"
        rows.append(
            [
                h.text(t.get("id"), "mono"),
                h.Cell(h.badge(_failure_class(t))),
                h.text(params_text(t), "mono"),
                h.num(t.get("attempts")),
                h.text(worker_label(t.get("worker")), "mono"),
                h.Cell(cell, None, "err"),
            ]
        )
    return h.table(
        ["trial", "class", "params", "attempts", "worker", "error"],
        rows,
        numeric=[False, False, False, True, False, False],
    )


def environment_section(run: Run) -> str:
    env, host = run.env, run.host
    driver = host.get("driver") or {}
    items = [("kind", h.esc(env.get("kind") or (run.meta.get("env") or {}).get("kind") or "—"))]
    lock_hash = env.get("lock_hash") or (run.meta.get("env") or {}).get("lock_hash")
    items.append(("lock hash", h.mono(lock_hash)))
    for key, label in (("env_file", "environment file"), ("lock_file", "lock file")):
        if env.get(key):
            items.append((label, h.mono(f"env/{env[key]}")))
    if env.get("platforms"):
        items.append(("platforms", h.esc(", ".join(map(str, env["platforms"])))))
    if env.get("added"):
        items.append(("added by xrun", h.esc(", ".join(map(str, env["added"])))))
    if driver:
        items.append(
            (
                "driver",
                h.esc(
                    f"{driver.get('hostname', '?')}: Python {driver.get('python', '?')}, "
                    f"{driver.get('platform', '?')}, {driver.get('cpus', '?')} CPUs"
                ),
            )
        )
    if host.get("scheduler"):
        items.append(("scheduler", h.mono(host["scheduler"])))
    image = run.image or {}
    for key, label in _IMAGE_FIELDS:
        if image.get(key):
            items.append((label, h.mono(image[key])))
    parts = [h.dl(items)]
    if image.get("dockerfile"):
        parts.append(
            f"<details><summary>Dockerfile</summary><pre>{h.esc(image['dockerfile'])}</pre></details>"
        )

    packages = _packages(run)
    key_packages = [(n, packages[n]) for n in KEY_PACKAGES if packages.get(n)]
    if key_packages or driver.get("python"):
        pills = (
            [f'<span class="pill">python <b>{h.esc(driver["python"])}</b></span>']
            if driver.get("python")
            else []
        )
        pills += [
            f'<span class="pill">{h.esc(n)} <b>{h.esc(v)}</b></span>' for n, v in key_packages
        ]
        parts.append(f'<h3>Key packages</h3><div class="pill-list">{"".join(pills)}</div>')
    if packages:
        rows = [[h.text(n, "mono"), h.text(v, "mono")] for n, v in sorted(packages.items())]
        parts.append(
            f"<details><summary>All {len(packages)} packages</summary>"
            f"{h.table(['package', 'version'], rows, sortable=True)}</details>"
        )
    parts.append(_workers_html(run, packages))
    parts.append(_code_and_data_html(run))
    return "\n".join(p for p in parts if p)


_IMAGE_FIELDS = (
    ("image", "image"),
    ("image_id", "image id"),
    ("env_layer_digest", "env layer digest"),
    ("base", "base image"),
    ("pushed", "pushed to"),
)


def _packages(run: Run) -> dict[str, str]:
    pkgs = run.env.get("packages")
    if isinstance(pkgs, dict) and pkgs:
        return {str(k): str(v) for k, v in pkgs.items()}
    driver = (run.host.get("driver") or {}).get("packages") or {}
    return {str(k): str(v) for k, v in driver.items() if v}


def _workers_html(run: Run, env_packages: dict[str, str]) -> str:
    workers = run.host.get("workers") or {}
    if not isinstance(workers, dict) or not workers:
        return ""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for addr, w in sorted(workers.items()):
        pk = w.get("packages") or {}
        differs = tuple(
            sorted(
                (n, str(v))
                for n, v in pk.items()
                if env_packages and n in env_packages and env_packages[n] != str(v)
            )
        )
        group = (w.get("hostname"), w.get("python"), w.get("platform"), len(pk), differs)
        groups.setdefault(group, []).append(addr)
    rows = []
    for (hostname, python, plat, npk, differs), addrs in groups.items():
        diff = ", ".join(f"{n} {v} (env {env_packages[n]})" for n, v in differs[:8])
        rows.append(
            [
                h.num(len(addrs)),
                h.text(hostname),
                h.text(python),
                h.text(plat),
                h.num(npk),
                h.Cell(
                    h.esc(diff) if diff else "same as the environment" if env_packages else "—",
                    None,
                    "err" if diff else "",
                ),
            ]
        )
    return "<h3>Workers</h3>" + h.table(
        ["workers", "host", "python", "platform", "packages", "versions"],
        rows,
        numeric=[True, False, False, False, True, False],
    )


def _code_and_data_html(run: Run) -> str:
    items = []
    if run.meta.get("code_hash"):
        items.append(("code hash", h.mono(run.meta["code_hash"])))
    if run.code_files is not None:
        items.append(("files", h.esc(f"{run.code_files} in code/source.tar.gz")))
    git = run.git or {}
    if git.get("commit"):
        dirty = " (with uncommitted changes, kept in code/git.json)" if git.get("dirty") else ""
        items.append(
            ("git", h.mono(git["commit"]) + h.esc(f" on {git.get('branch') or '?'}{dirty}"))
        )
    out = "<h3>Code</h3>" + h.dl(items) if items else ""
    data = run.data or {}
    if data:
        rows = [
            [
                h.text(name),
                h.text(d.get("path") or d.get("url"), "mono"),
                h.Cell(h.mono(d.get("sha256"), 16)),
                h.num(d.get("size")),
            ]
            for name, d in sorted(data.items())
            if isinstance(d, dict)
        ]
        out += "<h3>Data</h3>" + h.table(
            ["name", "source", "sha256", "bytes"], rows, numeric=[False, False, False, True]
        )
    return out


def reproduction_section(run: Run) -> str:
    rep = run.reproduce
    if not rep:
        return (
            '<p class="note">This bundle is not a reproduction. '
            "<code>xrun reproduce BUNDLE</code> re-runs trials from a bundle alone and writes a "
            "new bundle whose report shows the verdict here.</p>"
        )
    verdict = rep.get("verdict") or "unknown"
    rows_in = [r for r in rep.get("rows") or [] if isinstance(r, dict)]
    matched = sum(1 for r in rows_in if r.get("match"))
    parts = [
        f'<p class="verdict">{h.badge(verdict)} {h.esc(f"{matched} of {len(rows_in)} values match")}</p>'
    ]
    items = []
    if rep.get("original_run_id"):
        items.append(("original run", h.mono(rep["original_run_id"])))
    env_same = rep.get("env_identical")
    env_label = (
        h.badge("identical")
        if env_same is True
        else h.badge("differs")
        if env_same is False
        else h.esc("not compared")
    )
    items.append(
        (
            "environment",
            env_label + (f" {h.esc(rep['environment'])}" if rep.get("environment") else ""),
        )
    )
    parts.append(h.dl(items))
    problems = rep.get("problems") or []
    if problems:
        parts.append(
            "<h3>Problems</h3><ul>" + "".join(f"<li>{h.esc(p)}</li>" for p in problems) + "</ul>"
        )
    if rows_in:
        has_tol = any("tolerance" in r for r in rows_in)
        table_rows = []
        # Mismatches first: with --trials all they are what a reader looks for.
        shown = sorted(rows_in, key=lambda r: bool(r.get("match")))[:MAX_REPRODUCE_ROWS]
        for r in shown:
            ok = bool(r.get("match"))
            row = [
                h.text(r.get("trial"), "mono"),
                h.text(r.get("metric")),
                h.exact(r.get("recorded")),
                h.exact(r.get("reproduced")),
                h.exact(r.get("delta")),
            ]
            if has_tol:
                row.append(h.num(r.get("tolerance")))
            row.append(
                h.Cell(h.badge("match" if ok else "mismatch", "✓ match" if ok else "✗ differs"))
            )
            table_rows.append(row)
        headers = (
            ["trial", "metric", "recorded", "reproduced", "delta"]
            + (["tolerance"] if has_tol else [])
            + [""]
        )
        numeric = [False, False, True, True, True] + ([True] if has_tol else []) + [False]
        parts.append(h.table(headers, table_rows, sortable=True, numeric=numeric))
        if len(rows_in) > MAX_REPRODUCE_ROWS:
            parts.append(
                f'<p class="note">… and {len(rows_in) - MAX_REPRODUCE_ROWS} more in reproduce.json.</p>'
            )
    return "\n".join(parts)
