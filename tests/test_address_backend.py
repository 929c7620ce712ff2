"""`backend: address`: a scheduler and workers someone already started."""

from __future__ import annotations

import json

from runner.bundle.journal import read_journal

CODE = '''
import os

def train(params, ctx):
    return {"score": float(params["x"]), "pid": float(os.getpid())}
'''


def test_sweep_runs_on_an_existing_scheduler(project, run_xrun, dask_cluster) -> None:
    address, procs = dask_cluster
    project.file("experiments/remote.py", CODE)
    spec = project.spec(f"""
        xrun: 1
        name: remote
        code: {{include: ["experiments/*.py"]}}
        trial: {{function: "experiments.remote:train"}}
        sweep: {{method: list, points: [{{x: 1}}, {{x: 2}}, {{x: 3}}, {{x: 4}}]}}
        cluster: {{backend: address, address: "{address}", workers: 2}}
        output: runs
    """)
    res = run_xrun(spec, "-q", cwd=project.root)
    assert res.code == 0, res.err
    records = read_journal(res.bundle / "trials.jsonl")
    assert sorted(r["metrics"]["score"] for r in records) == [1.0, 2.0, 3.0, 4.0]
    worker_pids = {p.pid for p in procs[1:]}
    # trials ran in the user's worker processes, not in processes xrun started
    import psutil

    children = {c.pid for p in procs[1:] for c in psutil.Process(p.pid).children(recursive=True)}
    assert {int(r["metrics"]["pid"]) for r in records} <= worker_pids | children
    host = json.loads((res.bundle / "host.json").read_text())
    assert host["backend"] == "address" and host["scheduler"] == address and len(host["workers"]) == 2
    # the code was shipped: the workers' cwd has no experiments/ package
    assert all(p.cwd() != str(project.root) for p in map(psutil.Process, worker_pids))


def test_unreachable_scheduler_exits_3(project, run_xrun) -> None:
    project.file("experiments/remote.py", CODE)
    spec = project.spec("""
        xrun: 1
        name: remote
        code: {include: ["experiments/*.py"]}
        trial: {function: "experiments.remote:train"}
        cluster: {backend: address, address: "tcp://127.0.0.1:9"}
        output: runs
    """)
    res = run_xrun(spec, "-q", cwd=project.root, env={"XRUN_CONNECT_TIMEOUT": "3"})
    assert res.code == 3, res.err
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in res.err
    assert "Traceback" not in res.err
