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


# What the driver does while a run starts: a thread imports what sealing needs (requests, through
# rocrate), which adds requests' filter for urllib3's PySocks warning, while the main thread is inside
# a `warnings.catch_warnings()` block (the Dask client's creation), whose exit drops that filter.
_SOCKS_RACE = textwrap.dedent("""
    import sys, threading, warnings
    if sys.argv[1] == "quiet":
        from runner import config
        config.quiet_dependency_warnings()
    inside, imported = threading.Event(), threading.Event()
    def preload():
        inside.wait()
        import requests  # noqa: F401  (adds its filter, then imports urllib3.contrib.socks itself)
        imported.set()
    threading.Thread(target=preload).start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inside.set()
        imported.wait()
    sys.modules.pop("urllib3.contrib.socks", None)
    try:  # as requests' adapters import it, after the block
        import urllib3.contrib.socks  # noqa: F401
    except ImportError:  # without PySocks, after its warning
        pass
""")


@pytest.mark.parametrize("setup", ["quiet", "plain"])
def test_a_dependency_warning_silenced_by_its_package_stays_silent_across_threads(setup: str) -> None:
    try:
        import socks  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PySocks is installed: urllib3 has nothing to warn about")
    p = subprocess.run([sys.executable, "-c", _SOCKS_RACE, setup], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    if setup == "quiet":
        assert "SOCKS support" not in p.stderr, p.stderr
    else:  # the race itself: without xrun's filter, the warning is shown
        assert "SOCKS support in urllib3" in p.stderr, p.stderr
