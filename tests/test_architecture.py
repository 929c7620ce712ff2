"""The house rules of docs/architecture.md: the public API and the import layering."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import runner

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

PUBLIC = [
    "Bundle", "InfraError", "LoadedSpec", "Plan", "Reproduction", "RunOptions", "RunResult", "Spec",
    "SpecError", "TrialsFailed", "UsageError", "VerifyError", "XrunError", "__version__", "find_bundles",
    "load_environment", "load_spec", "loads_spec", "make_plan", "open_bundle", "reproduce_bundle",
    "run_spec", "verify_bundle", "write_report",
]  # fmt: skip


def test_public_api_is_exactly_the_documented_names():
    assert sorted(runner.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(runner, name) is not None, name
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    undocumented = [n for n in PUBLIC if not n.startswith("_") and f"`{n}`" not in readme]
    assert not undocumented, f"README's Python API section does not name {undocumented}"


def test_import_runner_is_cheap_and_names_resolve_on_use():
    code = (
        "import json, sys, runner\n"
        "before = sorted(m for m in ('dask', 'distributed', 'pydantic', 'runner.run') if m in sys.modules)\n"
        "runner.load_spec\n"
        "print(json.dumps([before, 'runner.spec' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [[], True]


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)}, timeout=300)  # fmt: skip


def test_layering_contracts_are_kept():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_is_rejected(tmp_path):
    shutil.copytree(REPO / "runner", tmp_path / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "runner" / "bundle" / "_inverted.py").write_text("from runner.run import run\n")
    result = _lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "runner.bundle is not allowed to import runner.run" in result.stdout
    assert "runner.bundle._inverted -> runner.run (l.1)" in result.stdout


def _function_level_imports(path: Path) -> list[tuple[int, list[str], bool]]:
    """(line, modules, has a reason) of each run of imports inside a function
    (TYPE_CHECKING blocks are at module level and not counted)."""
    import ast

    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        run: list[ast.stmt] = []
        for stmt in [*node.body, None]:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                run.append(stmt)
                continue
            if run:
                first, last = run[0].lineno, run[-1].end_lineno or run[-1].lineno
                span = lines[first - 2:last]  # the line before the run, and the run
                modules = [(s.module or "") if isinstance(s, ast.ImportFrom) else s.names[0].name for s in run]
                found.append((first, modules, any("#" in line for line in span)))
                run = []
    return found


def test_function_level_imports_defer_a_heavy_import_and_say_why():
    """docs/architecture.md: an import inside a function defers a heavy or optional
    import, with its reason next to it; the standard library is imported at the top."""
    stdlib = sys.stdlib_module_names
    problems = []
    for path in sorted((REPO / "runner").rglob("*.py")):
        for line, modules, reason in _function_level_imports(path):
            where = f"{path.relative_to(REPO)}:{line} ({', '.join(modules)})"
            if all(m.split(".")[0] in stdlib for m in modules) and not reason:
                problems.append(f"{where}: a standard library import belongs at the top of the module")
            elif not reason:
                problems.append(f"{where}: say why the import is deferred")
    assert not problems, "\n".join(problems)
