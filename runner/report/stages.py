"""The report's "Stages and final model" section: ``stages.json`` and ``final.json``.

Both come from the bundle (which may come from anyone): every value is escaped,
and anything of the wrong shape is shown as absent.
"""

from __future__ import annotations

from typing import Any

from runner.report import html as h
from runner.report.data import Run, _read_json


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def stages_section(run: Run) -> str:
    stages = _mapping(_read_json(run.root, "stages.json"))
    final = _mapping(_read_json(run.root, "final.json"))
    if not stages and not final and not _mapping(run.reproduce).get("stages"):
        return '<p class="note">This run has no prepare or final stage.</p>'
    parts = []
    rows = []
    for name in ("prepare", "final"):
        rec = _mapping(stages.get(name))
        if not rec:
            continue
        files = _mapping(rec.get("files"))
        where = "cached" + (f" (from {rec.get('cached_from')})" if rec.get("cached_from") else "") if rec.get("cached") else "ran"
        rows.append([
            h.text(name),
            h.Cell(h.badge(rec.get("status"))),
            h.text(where if rec.get("status") == "ok" else rec.get("reason") or rec.get("error") or ""),
            h.Cell(h.mono(rec.get("key"), 16)),
            h.num(len(files)),
            h.Cell(h.mono(rec.get("digest"), 16)),
        ])  # fmt: skip
    if rows:
        parts.append(h.table(["stage", "status", "", "key", "files", "outputs sha256"], rows))
    if final:
        parts.append(_final_model(final))
    reproduced = [r for r in _mapping(run.reproduce).get("stages") or [] if isinstance(r, dict)]
    if reproduced:
        parts.append("<h3>Reproduction of the stages</h3>")
        parts.append(h.table(["stage", "compared by", "match", "files that differ"], [
            [h.text(r.get("stage")), h.text(r.get("by")), h.Cell(h.badge("match" if r.get("match") else "mismatch")),
             h.text(", ".join(map(str, r.get("differ") or [])) or "—")] for r in reproduced
        ]))  # fmt: skip
    return "\n".join(parts)


def _final_model(final: dict[str, Any]) -> str:
    out = ["<h3>Final model</h3>"]
    best = _mapping(final.get("best"))
    model = _mapping(final.get("model"))
    holdout = _mapping(final.get("holdout"))
    items = [("status", h.badge(final.get("status")))]
    if best:
        items.append(("best point", h.mono(best.get("params"))))
        items.append((f"its {best.get('metric') or 'objective'} (mean over {best.get('n')} trial(s))", h.esc(h.fmt(best.get("value")))))
    if model:
        items.append(("model file", h.mono(model.get("path") or model.get("file"))))
        items.append(("model sha256", h.mono(model.get("sha256"))))
        items.append(("format", h.esc(f"{model.get('format')} {model.get('skops_version') or ''}".strip())))
        untrusted = model.get("untrusted_types")
        if isinstance(untrusted, list) and untrusted:
            items.append(("types to trust when loading", h.mono(", ".join(map(str, untrusted)))))
    if holdout:
        items.append(("holdout", h.esc(
            f"{holdout.get('fraction')} of the rows ({holdout.get('n_holdout')} held out, {holdout.get('n_train')} "
            f"for the sweep), {'stratified' if holdout.get('stratified') else 'not stratified'}, seed {holdout.get('seed')}"
        )))  # fmt: skip
    if final.get("error"):
        items.append(("error", h.mono(final.get("error"), 400)))
    out.append(h.dl(items))
    files = _mapping(final.get("files"))
    if files:
        rows = [[h.Cell(h.mono(rel)), h.Cell(h.mono(sha))] for rel, sha in sorted(files.items())[:50]]
        out.append(h.table(["file written by the final stage", "sha256"], rows))
    metrics = _mapping(final.get("metrics"))
    if metrics:
        label = "holdout metric" if holdout else "metric"
        out.append(h.table([label, "value"], [[h.text(k), h.exact(v)] for k, v in sorted(metrics.items())], numeric=[False, True]))
    return "\n".join(out)
