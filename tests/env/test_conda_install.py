"""Materializing conda locks with py-rattler: cached by lock hash, checked, atomic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.env import create_env, env_prefix, lock_env
from runner.errors import EnvFileError, UsageError, VerifyError
from tests.env.condachannel import conda_spec, make_package, write_env_yml


@pytest.fixture
def locked(tmp_path: Path, channel: Path):
    env_file = write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- libc\n")
    return lock_env(conda_spec(env_file, ["linux-64", "osx-arm64"]))


def test_create_installs_the_lock_into_the_cache_and_reuses_it(
    locked, _isolated_cache: Path
) -> None:
    python = create_env(locked)
    prefix = env_prefix(locked)
    assert prefix == _isolated_cache / "envs" / locked.lock_hash[:16]
    assert python == prefix / "bin" / "python"
    assert (prefix / "share" / "liba.txt").read_text() == "hello from liba\n"
    installed = sorted(p.name for p in (prefix / "conda-meta").glob("*.json"))
    assert installed == [
        f"dask-core-{locked.packages['dask-core']}-0.json",
        f"distributed-{locked.packages['distributed']}-0.json",
        "liba-1.0-0.json",
        "libb-2.0-0.json",
        "libc-3.0-0.json",
        f"python-{locked.packages['python']}-0.json",
    ]
    marker = json.loads((prefix / ".xrun-env.json").read_text())
    assert marker["lock_hash"] == locked.lock_hash and marker["platform"] == "linux-64"
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(prefix)

    before = (prefix / ".xrun-env.json").stat().st_mtime_ns
    assert create_env(locked) == python  # second time: reused, nothing installed again
    assert (prefix / ".xrun-env.json").stat().st_mtime_ns == before
    assert not [p for p in prefix.parent.iterdir() if p.name.endswith(".tmp")]


def test_files_name_the_final_prefix_not_the_temporary_one(tmp_path: Path, channel: Path) -> None:
    env_file = write_env_yml(tmp_path / "proj", channel, "- python\n- libp\n")
    locked = lock_env(conda_spec(env_file))
    create_env(locked)
    conf = env_prefix(locked) / "etc" / "libp.conf"
    assert conf.read_text() == f"prefix={env_prefix(locked)}\n"


def test_prefix_overrides_the_cache(locked, tmp_path: Path) -> None:
    python = create_env(locked, tmp_path / "my-env")
    assert python == tmp_path / "my-env" / "bin" / "python"
    assert (tmp_path / "my-env" / "share" / "liba.txt").exists()


def test_a_prefix_holding_something_else_is_refused(locked, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not an xrun environment"):
        create_env(locked, tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_a_tampered_package_fails_the_install_naming_it(locked, channel: Path) -> None:
    # same name, version and build; different content
    make_package(channel, "noarch", "liba", "1.0", files={"share/liba.txt": b"evil\n"})
    with pytest.raises(VerifyError) as err:
        create_env(locked)
    message = str(err.value)
    assert "conda package liba-1.0-0.tar.bz2 does not match the lock" in message
    assert "tampered" in message
    prefix = env_prefix(locked)
    assert not prefix.exists()
    assert not [p for p in prefix.parent.iterdir() if p.is_dir()]


def test_a_platform_not_in_the_lock_is_an_error(locked) -> None:
    with pytest.raises(EnvFileError, match=r"not win-64; add it to environment\.platforms"):
        create_env(locked, platform="win-64")


def test_an_interrupted_create_is_redone(locked) -> None:
    prefix = env_prefix(locked)
    prefix.mkdir(parents=True)
    (prefix / "half-written").write_text("")
    python = create_env(locked)
    assert python.exists() and not (prefix / "half-written").exists()


_CREATE = """
import sys
from types import SimpleNamespace
from pathlib import Path
from runner.env import create_env, load_env
env = SimpleNamespace(kind="conda", conda=Path(sys.argv[1]), platforms=["linux-64", "osx-arm64"])
print(create_env(load_env(env)))
"""


def test_concurrent_creates_do_not_corrupt(locked) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATE, str(locked.env_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    prefix = env_prefix(locked)
    assert paths == {str(prefix / "bin" / "python")}
    assert (prefix / "share" / "liba.txt").read_text() == "hello from liba\n"
    assert sorted(p.name for p in prefix.parent.iterdir()) == [prefix.name, prefix.name + ".lock"]


def test_pip_section_is_locked_with_hashes_and_installed(tmp_path: Path, channel: Path) -> None:
    """A pip: section is resolved with uv against PyPI (needs it reachable) and written as
    conda-lock pip entries, one artifact per platform; create installs them with hashes."""
    env_file = write_env_yml(
        tmp_path / "proj", channel, "- python 3.11.*\n- pip:\n  - six==1.16.0\n"
    )
    locked = lock_env(conda_spec(env_file, ["linux-64", "osx-arm64"]))
    from runner.env._condalock import read_lock

    pip = [e for e in read_lock(locked.lock_file).entries if e.manager == "pip"]
    assert sorted(e.platform for e in pip) == ["linux-64", "osx-arm64"]
    assert all(
        e.name == "six"
        and e.version == "1.16.0"
        and e.url.endswith(".whl")
        and len(e.sha256 or "") == 64
        for e in pip
    )
    conda = {e.name for e in read_lock(locked.lock_file).entries if e.manager == "conda"}
    assert "pip" in conda  # conda-lock adds pip itself when there is a pip: section
    assert locked.packages["six"] == "1.16.0"

    python = create_env(locked)
    out = subprocess.run(
        [python, "-c", "import six, sys; print(six.__version__, sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["1.16.0", str(env_prefix(locked))]
