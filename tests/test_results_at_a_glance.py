"""Results a scientist can trust at a glance, and the everyday rough edges:
repeats aggregated per point, `diff` by the objective's goal, `ls` statuses
(abandoned, failed before start) and `clean --runs`, tables that keep run ids
whole, all-cached runs on container backends, `plan --backend`, and the
address backend's worker count."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.bundle.liveness import STALE_AFTER_SECONDS, abandoned
from runner.bundle.points import aggregate, best_point, rank
from tests.conftest import xrun

# Point a=0 is noisy (0.05, 0.5, 0.95: the luckiest single trial of the sweep),
# point a=1 is steady (0.7 each): by mean, a=1 is the better point.
NOISY = """
def train(params, ctx):
    repeat = int(ctx.trial_id[1:]) % 3
    if params["a"] == 0:
        return {"score": 0.5 + 0.45 * (repeat - 1), "loss": 1.0}
    return {"score": 0.7, "loss": 2.0}
"""

SPEC = """
sweep:
  repeats: 3
  parameters: {a: [0, 1]}
  objective: {metric: score, goal: maximize}
trial: {function: experiments.noisy:train}
code: {include: ["experiments/*.py"]}
cluster: {workers: 1}
name: noisy-repeats-with-a-long-name
xrun: 1
"""


@pytest.fixture
def noisy(project):
    project.file("experiments/noisy.py", NOISY)
    return project.spec(SPEC)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_repeats_are_aggregated_and_best_is_the_best_mean(project, noisy) -> None:
    res = xrun(noisy, cwd=project.root)
    assert res.code == 0, res.err
    meta = json.loads((res.bundle / "bundle.json").read_text())
    best = meta["best"]
    # Not t00002 (0.95, a lucky seed of the noisy point): the steady point, by its mean.
    assert best["params"] == {"a": 1} and best["value"] == pytest.approx(0.7)
    assert best["n"] == 3 and best["std"] == pytest.approx(0.0) and best["trial"] in best["trials"]
    points = _rows(res.bundle / "points.csv")
    assert [p["param.a"] for p in points] == ["0", "1"]
    noisy_point = points[0]
    assert noisy_point["n"] == "3" and float(noisy_point["score.mean"]) == pytest.approx(0.5)
    assert float(noisy_point["score.std"]) == pytest.approx(statistics.stdev([0.05, 0.5, 0.95]))
    results = _rows(res.bundle / "results.csv")
    assert [r["repeat"] for r in results] == ["0", "1", "2", "0", "1", "2"]
    # The run's own summary and `show` say the same, with mean ± std.
    assert "score=0.7 ± 0 (mean of 3) at a=1" in res.err
    shown = xrun("show", res.bundle, cwd=project.root)
    assert shown.code == 0, shown.err
    assert "best point: score=0.7 ± 0 (mean of 3) at a=1" in shown.out
    assert "0.5 ± 0.45" in shown.out and "3/3" in shown.out  # the points table
    assert "points.csv" in (res.bundle / "MANIFEST.sha256").read_text()


def test_diff_uses_the_objective_goal_and_point_means(project, noisy) -> None:
    a = xrun(noisy, "-q", cwd=project.root)
    minimize = project.spec(SPEC.replace("metric: score, goal: maximize", "metric: loss, goal: minimize"), "min.yaml")
    b = xrun(minimize, "-q", "--no-cache", cwd=project.root)
    assert a.code == 0 and b.code == 0, a.err + b.err
    d = json.loads(xrun("diff", a.bundle, b.bundle, "--json", cwd=project.root).out)
    rows = {m["metric"]: m for m in d["metrics"]}
    # The first bundle's objective decides: score, maximize, by point means.
    assert rows["score"]["goal"] == "maximize" and rows["score"]["a_best"] == pytest.approx(0.7)
    d = json.loads(xrun("diff", b.bundle, a.bundle, "--json", cwd=project.root).out)
    rows = {m["metric"]: m for m in d["metrics"]}
    assert rows["loss"]["goal"] == "minimize"
    assert rows["loss"]["a_best"] == rows["loss"]["b_best"] == pytest.approx(1.0)  # the minimum, not the maximum (2.0)
    assert rows["score"]["a_best"] is None  # not the objective: no "best" claimed
    text = xrun("diff", b.bundle, a.bundle, cwd=project.root).out
    assert "loss (minimize)" in text


def test_all_cached_container_runs_say_no_cluster_started_and_diff_shows_backend(project, noisy) -> None:
    first = xrun(noisy, "-q", cwd=project.root)
    assert first.code == 0, first.err
    first_id = json.loads((first.bundle / "bundle.json").read_text())["run_id"]
    # No Docker daemon is needed: nothing is left to run, so no image is built.
    env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    docker = xrun(noisy, "--backend", "docker", cwd=project.root, env=env)
    assert docker.code == 0, docker.err
    assert "all 6 trials cached; no cluster started" in docker.err
    meta = json.loads((docker.bundle / "bundle.json").read_text())
    assert meta["backend"] == "docker" and meta["cluster_started"] is False
    assert meta["computed_by"] == [first_id]
    assert not (docker.bundle / "image.json").exists()
    shown = xrun("show", docker.bundle, cwd=project.root).out
    assert "no cluster started" in shown and first_id in shown
    kube = xrun(noisy, "--backend", "kubernetes", "--set", "image.registry=registry.example.com/me/x",
                cwd=project.root, env={**env, "KUBECONFIG": "/nonexistent"})  # fmt: skip
    assert kube.code == 0 and "no cluster started" in kube.err, kube.err
    d = json.loads(xrun("diff", first.bundle, docker.bundle, "--json", cwd=project.root).out)
    assert "backend: local → docker" in d["infrastructure"]
    assert "backend: local → docker" in xrun("diff", first.bundle, docker.bundle, cwd=project.root).out


def test_ls_hides_runs_that_failed_before_starting_and_clean_runs_removes_them(project, noisy) -> None:
    ok = xrun(noisy, "-q", cwd=project.root)
    assert ok.code == 0, ok.err
    # A new point on the docker backend with the current interpreter: fails
    # before any trial starts (the environment cannot be built into an image).
    bad = xrun(noisy, "--backend", "docker", "--set", "sweep.parameters.a=[5]", cwd=project.root)
    assert bad.code == 2, bad.err
    failed = Path(bad.err.split("partial results kept in ")[1].split(")")[0])
    assert json.loads((failed / "bundle.json").read_text())["status"] == "error"
    runs = project.root / "runs"
    shown = xrun("ls", runs, cwd=project.root)
    assert ok.bundle.name in shown.out and failed.name not in shown.out
    assert "1 run(s) that failed before any trial started are hidden" in shown.err
    every = xrun("ls", runs, "--all", cwd=project.root)
    assert failed.name in every.out and "error" in every.out
    assert {r["path"] for r in json.loads(xrun("ls", runs, "--all", "--json").out)} == {str(ok.bundle), str(failed)}
    cleaned = xrun("clean", "--runs", runs, cwd=project.root)
    assert cleaned.code == 0, cleaned.err
    assert cleaned.out.split() == [str(failed)]
    assert not failed.exists() and (ok.bundle / "bundle.json").is_file()
    assert xrun("verify", ok.bundle).code == 0


@pytest.mark.parametrize("columns", [80, 120])
def test_tables_keep_run_and_trial_ids_whole(project, noisy, columns: int) -> None:
    long_param = project.spec(
        SPEC.replace("parameters: {a: [0, 1]}", "parameters: {a: [0, 1], label: ['" + "x" * 70 + "']}")
        .replace("repeats: 3", "repeats: 1"),
        "long.yaml",
    )
    res = xrun(long_param, "-q", cwd=project.root)
    assert res.code == 0, res.err
    again = xrun(noisy, "-q", cwd=project.root)
    env = {"COLUMNS": str(columns)}
    listing = xrun("ls", project.root / "runs", cwd=project.root, env=env)
    assert listing.code == 0, listing.err
    for bundle in (res.bundle, again.bundle):
        assert bundle.name in listing.out  # whole, on one line: what tells runs apart
    assert max(len(line) for line in listing.out.splitlines()) <= columns
    shown = xrun("show", res.bundle, cwd=project.root, env=env)
    table = [line for line in shown.out.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and max(len(line) for line in table) <= columns
    assert "t00000" in shown.out and "t00001" in shown.out
    # The long parameter value is wrapped, not cut: all of it is there.
    assert shown.out.count("x") >= 70


def _start_slow_run(project) -> tuple[subprocess.Popen[str], Path]:
    project.file("experiments/slow.py", "import time\n\ndef train(params, ctx):\n    time.sleep(120)\n    return {'s': 1.0}\n")
    spec = project.spec(
        "xrun: 1\nname: slow\ntrial: {function: experiments.slow:train}\ncode: {include: ['experiments/*.py']}\n"
        "cluster: {workers: 1}\n",
        "slow.yaml",
    )
    proc = subprocess.Popen([sys.executable, "-m", "runner.cli", str(spec), "-q"], cwd=project.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        found = list((project.root / "runs").glob("slow-*/bundle.json"))
        if found and json.loads(found[0].read_text()).get("status") == "running":
            return proc, found[0].parent
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)


def test_a_killed_driver_is_shown_as_abandoned(project) -> None:
    proc, bundle = _start_slow_run(project)
    try:
        listing = xrun("ls", project.root / "runs", "--json")
        assert [r["status"] for r in json.loads(listing.out)] == ["running"]  # alive: still running
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the workers it started
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    rows = json.loads(xrun("ls", project.root / "runs", "--json").out)
    assert rows[0]["status"] == "abandoned" and f"pid {proc.pid}" in rows[0]["abandoned"]
    assert "abandoned" in xrun("ls", project.root / "runs").out
    shown = xrun("show", bundle)
    assert "status: abandoned" in shown.out and "is gone" in shown.out
    assert json.loads((bundle / "bundle.json").read_text())["status"] == "running"  # nothing rewritten


def test_abandonment_rules_pid_reuse_and_stale_heartbeat(tmp_path: Path) -> None:
    import psutil

    me = psutil.Process()
    here = socket.gethostname()
    (tmp_path / "bundle.json").write_text("{}")
    alive = {"status": "running", "liveness": {"host": here, "pid": me.pid, "pid_started": me.create_time()}}
    assert abandoned(alive, tmp_path) is None
    reused = {"status": "running", "liveness": {"host": here, "pid": me.pid, "pid_started": me.create_time() - 500}}
    assert "another process" in (abandoned(reused, tmp_path) or "")
    elsewhere = {"status": "running", "liveness": {"host": "another-host.invalid", "pid": 1, "pid_started": 0.0}}
    assert abandoned(elsewhere, tmp_path) is None  # fresh heartbeat
    old = time.time() - STALE_AFTER_SECONDS - 60
    os.utime(tmp_path / "bundle.json", (old, old))
    assert "no heartbeat" in (abandoned(elsewhere, tmp_path) or "")
    assert abandoned({**elsewhere, "status": "ok"}, tmp_path) is None
    assert "no heartbeat" in (abandoned({"status": "running", "liveness": "junk"}, tmp_path) or "")


def test_plan_takes_backend_and_workers(project, noisy) -> None:
    res = xrun("plan", noisy, "--backend", "docker", "--workers", "3", "--json", cwd=project.root)
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["backend"] == "docker" and info["workers"] == 3 and info["image"]
    bad = xrun("plan", noisy, "--backend", "nope", cwd=project.root)
    assert bad.code == 2 and "unknown backend" in bad.err


def test_address_backend_reports_the_workers_that_connected(project, dask_cluster) -> None:
    from distributed import Client

    address, _ = dask_cluster
    with Client(address, timeout=60) as client:  # both of the fixture's workers have joined
        client.wait_for_workers(2, timeout=120)
    project.file("experiments/noisy.py", NOISY)
    spec = project.spec(SPEC.replace("cluster: {workers: 1}", f'cluster: {{backend: address, address: "{address}", workers: 1}}'))
    res = xrun(spec, cwd=project.root)
    assert res.code == 0, res.err
    assert f"connecting to the Dask scheduler at {address} (waiting for at least 1 workers)" in res.err
    assert "2 workers connected" in res.err
    assert "starting address cluster" not in res.err


def test_exit_130_is_documented() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "`130` interrupted" in readme
    assert "130 interrupted" in xrun("run", "--help").out


# ---------------------------------------------------------------- properties

records = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["ok", "ok", "error"]), st.floats(-10, 10)),
    min_size=1, max_size=12,
)  # fmt: skip


@given(records, st.sampled_from(["maximize", "minimize"]), st.randoms())
def test_point_statistics_are_order_free_and_best_is_extreme_mean(rows, goal, rnd) -> None:
    recs = [{"id": f"t{i:05d}", "params": {"p": p}, "status": s, "metrics": {"m": v} if s == "ok" else {}}
            for i, (p, s, v) in enumerate(rows)]  # fmt: skip
    shuffled = list(recs)
    rnd.shuffle(shuffled)
    pts = aggregate(recs)
    assert [(p.params, p.trials, p.values) for p in pts] == [(p.params, p.trials, p.values) for p in aggregate(shuffled)]
    assert sum(len(p.trials) for p in pts) == len(recs)
    best = best_point(recs, "m", goal)
    means = [p.mean("m") for p in pts if p.mean("m") is not None]
    if not means:
        assert best is None
        return
    assert best is not None
    assert best["value"] == (max(means) if goal == "maximize" else min(means))
    assert rank(pts, "m", goal)[0].params == best["params"]
    values = [r["metrics"]["m"] for r in recs if r["params"] == best["params"] and r["status"] == "ok"]
    assert best["n"] == len(values) and best["value"] == pytest.approx(statistics.fmean(values))
