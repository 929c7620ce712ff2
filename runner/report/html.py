"""HTML building blocks of the report: escaping, formatting, tables, page shell.

Everything a bundle holds is user text (params, errors, descriptions, package
names); it reaches the page only through :func:`esc` or :func:`table`. The page
loads nothing: the style and the one small script are inline, and a
Content-Security-Policy forbids any other source.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


class Cell:
    """A table cell: its HTML, an optional sort key and a CSS class."""

    __slots__ = ("cls", "html", "sort")

    def __init__(self, html_: str, sort: Any = None, cls: str = "") -> None:
        self.html = html_
        self.sort = sort
        self.cls = cls


def text(value: Any, cls: str = "") -> Cell:
    return Cell(esc(value), None, cls)


def num(value: Any, cls: str = "num") -> Cell:
    sort = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return Cell(esc(fmt(value)), sort, cls)


def exact(value: Any, cls: str = "num") -> Cell:
    """A number with every digit (``repr``): where a difference in the last digit matters."""
    if isinstance(value, float) and math.isfinite(value):
        return Cell(esc(repr(value)), value, cls)
    return num(value, cls)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    cls: str = "",
    sortable: bool = False,
    numeric: Sequence[bool] = (),
) -> str:
    head = "".join(
        f'<th class="num">{esc(h)}</th>'
        if i < len(numeric) and numeric[i]
        else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for c in row:
            attrs = f' class="{c.cls}"' if c.cls else ""
            if c.sort is not None:
                attrs += f' data-v="{esc(repr(float(c.sort)))}"'
            cells.append(f"<td{attrs}>{c.html}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    classes = " ".join(x for x in (cls, "sortable" if sortable else "") if x)
    cls_attr = f' class="{classes}"' if classes else ""
    return (
        f'<div class="table-wrap"><table{cls_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def dl(items: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML (escape them first)."""
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def badge(status: Any, label: Any = None) -> str:
    s = str(status or "unknown")
    css = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in s.lower())
    return f'<span class="badge s-{css}">{esc(label if label is not None else s)}</span>'


def mono(value: Any, limit: int | None = None) -> str:
    s = "" if value is None else str(value)
    if limit and len(s) > limit:
        return f'<code title="{esc(s)}">{esc(s[:limit])}…</code>'
    return f"<code>{esc(s)}</code>"


# ------------------------------------------------------------------ formatting


def fmt(value: Any) -> str:
    """A value for display: numbers to 4 significant digits, JSON for the rest."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def param_label(value: Any) -> str:
    """A parameter value as a category label: strings as they are (a lone surrogate,
    which a JSON escape can make and no text encoding can write, as "?"), JSON for the rest."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min {s:02d} s"
    h, rest = divmod(round(seconds), 3600)
    return f"{h} h {rest // 60:02d} min"


def timestamp(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return "—"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


# ------------------------------------------------------------------ the page

STYLE = """
:root{--fg:#1f2328;--muted:#626a75;--line:#e3e6ea;--bg:#f6f7f9;--card:#fff;--accent:#2f6db3;
--ok:#3b8f5a;--bad:#d1495b;--warn:#e89f2c;--purple:#8e5ea2;--grey:#8a9099}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
main{max-width:1200px;margin:0 auto;padding:20px 24px 48px}
header.top{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin-bottom:16px}
h1{font-size:24px;margin:0;display:inline;vertical-align:middle}
h2{font-size:17px;margin:0 0 10px}
h3{font-size:14px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.desc{margin:6px 0 0;color:var(--muted)}
.runid{margin:4px 0 0;color:var(--muted);font-size:13px}
nav{margin-top:12px;display:flex;flex-wrap:wrap;gap:6px}
nav a{font-size:12.5px;color:var(--accent);text-decoration:none;border:1px solid var(--line);border-radius:999px;padding:2px 10px;background:#fafbfc}
nav a:hover{background:#eef3fa}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 22px;margin-bottom:16px}
.note{color:var(--muted);margin:6px 0}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:4px 0 14px}
.tile{border:1px solid var(--line);border-radius:8px;padding:8px 12px;background:#fbfcfd}
.tile .k{font-size:12px;color:var(--muted)}
.tile .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.tile .v small{font-size:12px;font-weight:400;color:var(--muted)}
.tile.bad .v{color:var(--bad)}.tile.good .v{color:var(--ok)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px;margin:0}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
.table-wrap{overflow-x:auto;margin:6px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 9px;border-bottom:1px solid var(--line);vertical-align:baseline}
th{background:#f3f5f7;font-weight:600;white-space:nowrap;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
tr.best td{background:#fff6e0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
table.sortable th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
td.err{color:#8a1f2d;max-width:560px;overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff;background:var(--grey);vertical-align:middle;white-space:nowrap}
h1+.badge{margin-left:10px;font-size:13px}
.s-ok,.s-match,.s-identical{background:var(--ok)}
.s-failed,.s-error,.s-mismatch,.s-differs{background:var(--bad)}
.s-timeout,.s-interrupted{background:var(--warn)}
.s-oom{background:var(--purple)}.s-worker-lost{background:#4a4a4a}
.s-cached{background:#6a9fc8}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:14px 18px}
figure{margin:0}
svg.plot{width:100%;height:auto;display:block}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px}
details{margin:6px 0}
summary{cursor:pointer;color:var(--accent)}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:8px 10px;overflow:auto;
font-size:12px;max-height:320px;white-space:pre-wrap;overflow-wrap:anywhere}
.verdict{font-size:18px;font-weight:600;margin:0 0 8px}
.pill-list{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0}
.pill{border:1px solid var(--line);border-radius:6px;padding:1px 8px;font-size:12.5px;background:#fbfcfd}
.pill b{font-weight:600}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:8px}
@media print{body{background:#fff}section,header.top{break-inside:avoid;border-color:#ccc}nav{display:none}}
"""

# Sortable tables (click a header), then mark the page as scripted: the browser
# test reads that mark to prove the script ran without an error.
SCRIPT = """
(function(){
function key(td){var v=td.getAttribute("data-v");if(v!==null){return parseFloat(v);}return td.textContent.trim();}
function cmp(a,b){if(typeof a==="number"&&typeof b==="number"){return a-b;}
if(typeof a==="number"){return -1;}if(typeof b==="number"){return 1;}return a.localeCompare(b,undefined,{numeric:true});}
document.querySelectorAll("table.sortable").forEach(function(table){
var heads=table.querySelectorAll("thead th");
heads.forEach(function(th,col){th.addEventListener("click",function(){
var asc=th.getAttribute("aria-sort")!=="ascending";
heads.forEach(function(h){h.removeAttribute("aria-sort");});
th.setAttribute("aria-sort",asc?"ascending":"descending");
var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(r1,r2){var c=cmp(key(r1.cells[col]),key(r2.cells[col]));return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});});});});
document.documentElement.setAttribute("data-report-ready","1");
})();
"""


def page(title: str, body: str) -> str:
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="xrun">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
