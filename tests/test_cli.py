"""CLI behaviour: bare `xrun SPEC`, usage errors, init, ls/show."""

from __future__ import annotations

import json


def test_init_scaffolds_a_project_that_validates_and_runs(tmp_path, run_xrun) -> None:
    res = run_xrun("init", tmp_path / "proj", "--name", "demo")
    assert res.code == 0, res.err
    assert (tmp_path / "proj" / "demo.yaml").is_file()
    assert run_xrun("validate", tmp_path / "proj" / "demo.yaml").code == 0
    again = run_xrun("init", tmp_path / "proj", "--name", "demo")
    assert again.code == 2 and "already exists" in again.err
    ran = run_xrun(tmp_path / "proj" / "demo.yaml", "-q", "--set", "sweep.parameters.C=[1]", cwd=tmp_path / "proj")
    assert ran.code == 0, ran.err
    listed = run_xrun("ls", tmp_path / "proj" / "runs", "--json")
    rows = json.loads(listed.out)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["counts"]["ok"] == 2
    shown = run_xrun("show", ran.bundle)
    assert shown.code == 0 and "t00000" in shown.out


def test_usage_errors_exit_2(tmp_path, run_xrun) -> None:
    assert run_xrun("run").code == 2
    assert run_xrun("run", "x.yaml", "--bogus").code == 2
    res = run_xrun("show", tmp_path)
    assert res.code == 2 and "not a bundle" in res.err
    res = run_xrun("verify", tmp_path / "missing")
    assert res.code == 2 and "no such bundle" in res.err
