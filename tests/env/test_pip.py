"""Pip environments: uv-compiled locks with hashes, staleness, and real installs.

These resolve against PyPI (reachable from developers' machines and CI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.env import check_lock, create_env, env_prefix, load_env, lock_env, lock_path_for
from runner.env.pip import header, input_digest
from runner.errors import EnvFileError
from tests.env.condachannel import DISTRIBUTED, pip_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "envs" / "sklearn-pip.in"
DRIVER_PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture
def small_in(tmp_path: Path) -> Path:
    path = tmp_path / "small.in"
    path.write_text("six==1.16.0\n")
    return path


def test_lock_pins_and_hashes_everything(small_in: Path) -> None:
    locked = lock_env(pip_spec(small_in))
    assert locked.lock_file == small_in.with_name("small.lock") == lock_path_for(small_in, "pip")
    text = locked.lock_file.read_text()
    requirements = [
        line
        for line in text.splitlines()
        if line and not line.startswith(" ") and not line.startswith("#")
    ]
    assert requirements and all("==" in r and r.endswith("\\") for r in requirements)
    assert "six==1.16.0" in text and "--hash=sha256:" in text
    # the worker runtime: distributed and dask at the driver's version, recorded
    assert locked.added == (f"distributed=={DISTRIBUTED}", f"dask=={DISTRIBUTED}")
    assert locked.packages["distributed"] == locked.packages["dask"] == DISTRIBUTED
    assert "cloudpickle" in locked.packages
    head = header(locked.lock_file)
    assert head["input-sha256"] == input_digest(small_in)
    assert head["python-version"] == DRIVER_PY
    assert head["platforms"].split()[0] == "x86_64-manylinux_2_28"
    assert head["added-for-worker-runtime"] == " ".join(locked.added)


def test_same_input_gives_a_byte_identical_lock(small_in: Path) -> None:
    first = lock_env(pip_spec(small_in)).lock_file.read_bytes()
    assert lock_env(pip_spec(small_in)).lock_file.read_bytes() == first


def test_round_trip_lock_check_edit_stale(small_in: Path) -> None:
    spec = pip_spec(small_in)
    assert check_lock(spec) == (False, "small.lock does not exist")
    locked = lock_env(spec)
    assert check_lock(spec) == (True, "small.lock is up to date")
    assert load_env(spec) == locked

    small_in.write_text("six==1.16.0\nidna==3.7\n")
    assert check_lock(spec) == (False, "small.in changed since it was locked")
    with pytest.raises(EnvFileError) as err:
        load_env(spec)
    assert str(err.value) == (
        f"{small_in}: small.in changed since it was locked; run `xrun lock SPEC` (or pass --relock)"
    )
    assert err.value.exit_code == 2
    relocked = load_env(spec, relock=True)
    assert relocked.lock_hash != locked.lock_hash
    assert check_lock(spec)[0]


def test_an_included_file_is_part_of_the_input(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("six==1.16.0\n")
    main = tmp_path / "main.in"
    main.write_text("-r base.txt\n")
    spec = pip_spec(main)
    lock_env(spec)
    assert check_lock(spec)[0]
    (tmp_path / "base.txt").write_text("six==1.15.0\n")
    assert not check_lock(spec)[0]


def test_an_env_naming_distributed_gets_nothing_added(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text(f"distributed=={DISTRIBUTED}\n")
    path = tmp_path / "d.in"
    path.write_text("-r base.txt\n")
    locked = lock_env(pip_spec(path))
    assert locked.added == ()
    assert "added-for-worker-runtime" not in header(locked.lock_file)


def test_unresolvable_requirements_carry_uvs_explanation(tmp_path: Path) -> None:
    path = tmp_path / "bad.in"
    path.write_text("six==999.0\n")
    with pytest.raises(EnvFileError) as err:
        lock_env(pip_spec(path))
    message = str(err.value)
    assert message.startswith(f"{path}: cannot resolve the requirements:")
    assert "six==999.0" in message
    assert not path.with_suffix(".lock").exists()


def test_the_committed_example_lock_is_current() -> None:
    fresh, why = check_lock(pip_spec(EXAMPLE))
    assert fresh, f"{why}: regenerate envs/sklearn-pip.lock with `xrun lock`"
    locked = load_env(pip_spec(EXAMPLE))
    assert locked.packages["scikit-learn"] == "1.5.2"


@pytest.mark.slow
def test_a_created_pip_env_runs_the_locked_sklearn(tmp_path: Path) -> None:
    locked = load_env(pip_spec(EXAMPLE))
    python = create_env(locked)
    assert python == env_prefix(locked) / "bin" / "python"
    out = subprocess.run(
        [
            python,
            "-c",
            "import sklearn, distributed; print(sklearn.__version__, distributed.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["1.5.2", DISTRIBUTED]
    # the venv is relocatable: it still runs from where the atomic rename put it
    dask = subprocess.run(
        [env_prefix(locked) / "bin" / "dask", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert DISTRIBUTED in dask.stdout
    assert create_env(locked) == python  # second time: the cached prefix
