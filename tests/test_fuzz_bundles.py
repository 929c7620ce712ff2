"""Fuzzing what others hand to xrun: the files of a bundle, and specs.

Every generated input must end in exit 0, 1, 2 or 3, with no traceback and no
"internal error", and nothing may be written outside the directories the
command was given (the bundle, the `pack` output, the cache). The CLI runs in
this process (``runner.cli.main``) for speed; example counts come from the
Hypothesis profile (`ci` by default; `HYPOTHESIS_PROFILE=long` with `--timeout=0` for a deep run).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from runner.cli import main

TRAIN = '''
def train(params, ctx):
    ctx.log(step=1, note="hello")
    print("x is", params["x"])
    return {"score": float(params["x"])}
'''

FILES = ["bundle.json", "trials.jsonl", "env/env.json", "code/files.json", "MANIFEST.sha256"]
NASTY = ["../../outside", "/etc/passwd", "..", ".", "", "logs/../../../x", "env", "\x1b]0;t\x07", "[link=x]y[/link]",
         "bundle.json", "code/source.tar.gz", "a\x00b", "~/.ssh/id_rsa", "logs", "C:\\x", "\u202e"]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(NASTY),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(NASTY)), inner, max_size=4)),
    max_leaves=10,
)


def cli(*args: str | Path) -> tuple[int, str, str]:
    """``xrun ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def listing(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("fz-project")
    (project / "experiments").mkdir()
    (project / "experiments" / "__init__.py").write_text("")
    (project / "experiments" / "fz.py").write_text(TRAIN)
    (project / "fz.yaml").write_text("xrun: 1\nname: fz\ntrial: {function: 'experiments.fz:train'}\noutput: runs\n"
                                     "sweep: {method: list, points: [{x: 1}, {x: 2}], objective: {metric: score}}\n"
                                     "code: {include: ['experiments/*.py']}\ncluster: {workers: 1}\n")  # fmt: skip
    env = {**os.environ, "XRUN_CACHE_DIR": str(tmp_path_factory.mktemp("fz-cache"))}
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "fz.yaml", "-q"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _mutated_json(original: str, path: list[str], value: object) -> str:
    try:
        doc = json.loads(original)
    except ValueError:
        doc = {}
    node = doc
    for key in path[:-1]:
        if not isinstance(node, dict):
            break
        node = node.setdefault(key, {})
    if isinstance(node, dict):
        node[path[-1]] = value
    return json.dumps(doc)


@st.composite
def bundle_edits(draw: st.DrawFn) -> tuple[str, bytes | str | tuple[list[str], object]]:
    name = draw(st.sampled_from(FILES))
    kind = draw(st.sampled_from(["bytes", "text", "json", "mutate", "lines"]))
    if kind == "bytes":
        return name, draw(st.binary(max_size=300))
    if kind == "text":
        return name, draw(st.text(max_size=300))
    if kind == "json":
        return name, json.dumps(draw(json_values))
    keys = ["run_id", "status", "counts", "best", "bundle_version", "env_file", "lock_file", "kind", "packages",
            "id", "params", "metrics", "error", "failure_class", "lock_hash", "created", "metric", "value", "trial"]  # fmt: skip
    if kind == "mutate":
        return name, (draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3)), draw(json_values))
    digest = draw(st.sampled_from(["0" * 64, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "zz"]))
    lines = draw(st.lists(st.one_of(st.builds(lambda p: f"{digest}  {p}", st.sampled_from(NASTY)),
                                    st.builds(json.dumps, st.dictionaries(st.sampled_from(keys), json_values, max_size=5))),
                          max_size=5))  # fmt: skip
    return name, "\n".join(lines) + "\n"


def _apply(bundle: Path, name: str, content: bytes | str | tuple[list[str], object]) -> None:
    path = bundle / name
    if isinstance(content, tuple):
        original = path.read_text(encoding="utf-8", errors="replace") if path.exists() else "{}"
        if name == "trials.jsonl":
            lines = original.splitlines() or ["{}"]
            lines[-1] = _mutated_json(lines[-1], *content)
            path.write_text("\n".join(lines) + "\n")
        else:
            path.write_text(_mutated_json(original, *content))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")


@given(edits=st.lists(bundle_edits(), min_size=1, max_size=3), reseal=st.booleans())
@example(edits=[("bundle.json", (["created"], 1))], reseal=False)  # found by this test: pack crashed
@example(edits=[("env/env.json", "Infinity")], reseal=False)  # found by this test: diff crashed
def test_fuzzed_bundle_files_end_in_a_clean_exit(base_bundle: Path, edits: list, reseal: bool) -> None:
    from runner.bundle.manifest import write_manifest

    ws = Path(tempfile.mkdtemp(prefix="xrun-fuzz-"))
    try:
        bundle = Path(shutil.copytree(base_bundle, ws / "given" / base_bundle.name))
        other = Path(shutil.copytree(base_bundle, ws / "other" / base_bundle.name))
        for name, content in edits:
            _apply(bundle, name, content)
        if reseal and not any(name == "MANIFEST.sha256" for name, _ in edits):
            write_manifest(bundle)  # a forger's bundle: verifies, contents hostile
        before = listing(ws)
        packed = ws / "out" / "b.tar.gz"
        commands = [("show", bundle), ("show", bundle, "--json"), ("verify", bundle), ("ls", ws / "given"),
                    ("ls", ws / "given", "--json"), ("diff", bundle, other), ("diff", other, bundle, "--json"),
                    ("pack", bundle, "-o", packed)]  # fmt: skip
        for args in commands:
            code, out, err = cli(*args)
            assert code in (0, 1, 2, 3), (args, code, err)
            assert "Traceback" not in err and "internal error" not in err, (args, err)
        if packed.exists():
            for args in (("verify", packed), ("show", packed)):
                code, out, err = cli(*args)
                assert code in (0, 1, 2, 3) and "Traceback" not in err and "internal error" not in err, (args, err)
        after = listing(ws)
        new = {p for p in after - before if not p.startswith(("given/", "out"))}
        assert not new, new  # nothing written beside what the commands were given
        assert listing(ws / "other") == {p.removeprefix("other/") for p in before if p.startswith("other/")}
    finally:
        shutil.rmtree(ws, ignore_errors=True)


BASE_SPEC = {
    "xrun": 1,
    "name": "fz",
    "trial": {"function": "experiments.fz:train"},
    "sweep": {"method": "grid", "parameters": {"x": [1, 2]}},
    "code": {"include": ["experiments/*.py"]},
}
SPEC_KEYS = ["xrun", "name", "trial", "sweep", "code", "include", "exclude", "root", "output", "method", "parameters",
             "samples", "points", "repeats", "function", "uniform", "int", "cluster", "workers", "data", "path",
             "secrets", "environment", "current", "objective", "metric", "seed"]  # fmt: skip


@given(
    mutations=st.lists(st.tuples(st.lists(st.sampled_from(SPEC_KEYS), min_size=1, max_size=3), json_values), max_size=3),
    raw=st.one_of(st.none(), st.text(max_size=200)),
)
def test_fuzzed_specs_end_in_a_clean_exit(tmp_path_factory: pytest.TempPathFactory, mutations: list, raw: str | None) -> None:
    ws = Path(tempfile.mkdtemp(prefix="xrun-fuzz-spec-"))
    try:
        (ws / "experiments").mkdir()
        (ws / "experiments" / "fz.py").write_text(TRAIN)
        doc = json.loads(json.dumps(BASE_SPEC))
        for path, value in mutations:
            node = doc
            for key in path[:-1]:
                if not isinstance(node.get(key), dict):
                    node[key] = {}
                node = node[key]
            node[path[-1]] = value
        spec = ws / "s.yaml"
        spec.write_text(raw if raw is not None else yaml.safe_dump(doc), encoding="utf-8", errors="surrogatepass")
        before = listing(ws)
        cwd = os.getcwd()
        os.chdir(ws)
        try:
            for args in (("validate", spec), ("plan", spec, "--json")):
                code, out, err = cli(*args)
                assert code in (0, 1, 2, 3), (args, code, err)
                assert "Traceback" not in err and "internal error" not in err, (args, err)
        finally:
            os.chdir(cwd)
        assert listing(ws) == before  # validate and plan write nothing beside the spec
    finally:
        shutil.rmtree(ws, ignore_errors=True)
