"""`xrun lock` keeps the versions an existing lock pins while they still satisfy
the environment file (as `uv lock` and `conda-lock` do); `--upgrade` and
`--upgrade-package NAME` move them."""

from __future__ import annotations

from pathlib import Path

from runner.env import lock_env, pinned
from tests.conftest import xrun
from tests.env.condachannel import conda_spec, write_env_yml


def test_conda_relock_keeps_pins_until_upgraded(tmp_path: Path, channel: Path) -> None:
    # liba 0.9 and 1.0 are both in the channel; the lock starts on 0.9.
    env_file = write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- liba 0.9\n")
    spec = conda_spec(env_file, ["linux-64"])
    assert lock_env(spec).packages["liba"] == "0.9"
    # The pin is relaxed in the file: a relock (a clone, a new machine) keeps 0.9.
    write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- liba\n")
    assert pinned(spec)["liba"] == "0.9"
    assert lock_env(spec).packages["liba"] == "0.9"
    # Releasing another package's pin leaves liba alone; releasing liba's moves it.
    assert lock_env(spec, upgrade_packages=["python"]).packages["liba"] == "0.9"
    assert lock_env(spec, upgrade_packages=["liba"]).packages["liba"] == "1.0"
    # A pin the file no longer allows moves without being asked.
    write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- liba 0.9\n")
    assert lock_env(spec).packages["liba"] == "0.9"
    write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- liba >=1\n")
    assert lock_env(spec).packages["liba"] == "1.0"
    # --upgrade releases every pin.
    write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- liba 0.9\n")
    lock_env(spec)
    write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- liba\n")
    assert lock_env(spec, upgrade=True).packages["liba"] == "1.0"


def test_pip_relock_keeps_pins_and_cli_upgrade_flags_move_them(tmp_path: Path) -> None:
    reqs = tmp_path / "reqs.in"
    reqs.write_text("six==1.16.0\n")
    spec = tmp_path / "spec.yaml"
    (tmp_path / "m.py").write_text("def f(params, ctx):\n    return {}\n")
    spec.write_text("xrun: 1\nname: pins\nenvironment: {pip: reqs.in}\ntrial: {function: m:f}\n")
    first = xrun("lock", spec, cwd=tmp_path)
    assert first.code == 0, first.err
    lock = tmp_path / "reqs.lock"
    assert "six==1.16.0" in lock.read_text()
    reqs.write_text("six>=1.15\n")  # relaxed: 1.17.0 exists, the committed pin stays
    again = xrun("lock", spec, cwd=tmp_path)
    assert again.code == 0, again.err
    assert "six==1.16.0" in lock.read_text() and "changed:" not in again.err
    moved = xrun("lock", spec, "--upgrade-package", "six", cwd=tmp_path)
    assert moved.code == 0, moved.err
    assert "six==1.16.0" not in lock.read_text()
    assert "changed: six 1.16.0 → 1.17" in moved.err
    reqs.write_text("six==1.16.0\n")
    assert xrun("lock", spec, cwd=tmp_path).code == 0
    reqs.write_text("six>=1.15\n")
    assert xrun("lock", spec, cwd=tmp_path).code == 0 and "six==1.16.0" in lock.read_text()
    up = xrun("lock", spec, "--upgrade", cwd=tmp_path)
    assert up.code == 0, up.err
    assert "six==1.16.0" not in lock.read_text()
