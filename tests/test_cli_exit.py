"""How xrun's own process ends: objects frozen for the interpreter's exit (no
last full garbage collection), the trial cache closed by the run itself."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.cli import main

REPO = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent("""
    import gc, sys
    from runner.cli import main
    sys.argv = ["xrun", *sys.argv[1:]]
    try:
        main()
    finally:
        print("frozen", gc.get_freeze_count(), file=sys.stderr)
""")


@pytest.mark.parametrize("args", [["validate", "specs/quickstart.yaml"], ["validate", "specs/nope.yaml"]])
def test_the_process_command_freezes_its_objects_for_exit(args: list[str]) -> None:
    """Success or a usage error: the objects are frozen once the command is done."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == (0 if "quickstart" in args[1] else 2), done.stderr
    frozen = int(done.stderr.rsplit("frozen", 1)[1])
    assert frozen > 10_000, done.stderr


def test_a_command_called_in_process_freezes_nothing() -> None:
    """``main(argv)`` (tests, embedding) leaves the caller's garbage collection alone."""
    before = gc.get_freeze_count()
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(REPO / "specs" / "quickstart.yaml")])
    assert exc.value.code in (0, None)
    assert gc.get_freeze_count() == before


def test_a_run_closes_the_trial_cache_before_exit(project, run_xrun, tmp_path: Path) -> None:
    """The cache database is checkpointed and closed by the run: no write-ahead log is left behind."""
    cache = tmp_path / "cache"
    project.file("experiments/quick.py", "def train(params, ctx):\n    return {'score': float(params['x'])}\n")
    spec = project.spec("""
        xrun: 1
        name: quick
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.quick:train"}
        sweep: {parameters: {x: [1, 2, 3]}}
        cluster: {workers: 1}
        output: out
    """)
    res = run_xrun("run", spec, "-q", cwd=project.root, env={"XRUN_CACHE_DIR": str(cache)})
    assert res.code == 0, res.err
    assert (cache / "trials.sqlite").is_file()
    wal = cache / "trials.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
