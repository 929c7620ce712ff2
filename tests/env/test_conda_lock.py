"""Locking conda environments: conda-lock's format and hash, solved with py-rattler."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.env import check_lock, load_env, lock_env, lock_path_for
from runner.errors import EnvFileError
from tests.env.condachannel import DISTRIBUTED, conda_spec, write_env_yml

BOTH = ["linux-64", "osx-arm64"]


def conda_lock_cli() -> str:
    found = Path(sys.executable).parent / "conda-lock"
    if found.exists():
        return str(found)
    which = shutil.which("conda-lock")
    if which is None:
        pytest.fail("conda-lock is not installed (pip install 'xrun[conda]')")
    return which


@pytest.fixture
def env_file(tmp_path: Path, channel: Path) -> Path:
    return write_env_yml(tmp_path / "proj", channel, "- python 3.11.*\n- libc\n", "sklearn.yml")


def test_lock_is_written_beside_the_env_file_under_conda_locks_name(env_file: Path) -> None:
    locked = lock_env(conda_spec(env_file))
    assert locked.lock_file == env_file.with_name("sklearn.conda-lock.yml")
    assert lock_path_for(env_file, "conda") == locked.lock_file
    assert locked.lock_file.exists()
    data = yaml.safe_load(locked.lock_file.read_text())
    assert data["version"] == 1
    assert data["metadata"]["sources"] == ["sklearn.yml"]


def test_same_inputs_give_a_byte_identical_lock(env_file: Path) -> None:
    first = lock_env(conda_spec(env_file, BOTH))
    text = first.lock_file.read_bytes()
    second = lock_env(conda_spec(env_file, BOTH))
    assert second.lock_file.read_bytes() == text
    assert second.lock_hash == first.lock_hash


def test_dependencies_resolve_on_two_platforms(env_file: Path) -> None:
    locked = lock_env(conda_spec(env_file, BOTH))
    data = yaml.safe_load(locked.lock_file.read_text())
    by_platform: dict[str, dict[str, dict]] = {}
    for pkg in data["package"]:
        by_platform.setdefault(pkg["platform"], {})[pkg["name"]] = pkg
    assert sorted(by_platform) == BOTH
    for platform, pkgs in by_platform.items():
        # libc -> libb -> liba >=1 (1.0 chosen over 0.9), and the worker runtime
        assert {"libc", "libb", "liba", "python", "distributed", "dask-core"} <= set(pkgs)
        assert pkgs["liba"]["version"] == "1.0"
        assert f"/{platform}/libc-3.0-0.tar.bz2" in pkgs["libc"]["url"]
        assert "/noarch/" in pkgs["libb"]["url"]
        assert len(pkgs["libc"]["hash"]["sha256"]) == 64 and pkgs["libc"]["hash"]["md5"]
    # the osx build needs __osx >=11, satisfied by conda-lock's default virtual packages
    assert "__osx" in by_platform["osx-arm64"]["libc"]["dependencies"]
    assert locked.platforms == tuple(BOTH)


def test_worker_runtime_is_added_and_recorded(env_file: Path) -> None:
    locked = lock_env(conda_spec(env_file))
    assert locked.added == (f"distributed=={DISTRIBUTED}", f"dask-core=={DISTRIBUTED}")
    assert locked.packages["distributed"] == DISTRIBUTED
    data = yaml.safe_load(locked.lock_file.read_text())
    custom = data["metadata"]["custom_metadata"]
    assert custom == {"xrun-added-for-worker-runtime": " ".join(locked.added)}


def test_an_env_naming_distributed_gets_nothing_added(tmp_path: Path, channel: Path) -> None:
    env_file = write_env_yml(tmp_path, channel, "- python\n- distributed\n- liba\n")
    locked = lock_env(conda_spec(env_file))
    assert locked.added == ()
    assert "custom_metadata" not in yaml.safe_load(locked.lock_file.read_text())["metadata"]


def test_conda_lock_render_accepts_the_lock(env_file: Path, tmp_path: Path) -> None:
    locked = lock_env(conda_spec(env_file, BOTH))
    out = tmp_path / "render"
    out.mkdir()
    proc = subprocess.run(
        [
            conda_lock_cli(),
            "render",
            "--kind",
            "explicit",
            "-p",
            "osx-arm64",
            str(locked.lock_file),
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rendered = (out / "conda-osx-arm64.lock").read_text()
    assert "@EXPLICIT" in rendered
    assert "/osx-arm64/libc-3.0-0.tar.bz2#" in rendered
    assert "/noarch/liba-1.0-0.tar.bz2#" in rendered


def _fake_conda(tmp_path: Path) -> Path:
    """Answers `--version` (conda-lock asks first) and fails on anything else, so a
    conda-lock run that decides to solve fails loudly."""
    conda = tmp_path / "fake-conda"
    conda.write_text(
        '#!/bin/sh\n[ "$1" = "--version" ] && { echo "conda 24.7.1"; exit 0; }\n'
        'echo "fake conda asked to solve: $*" >&2; exit 97\n'
    )
    conda.chmod(0o755)
    return conda


def _conda_lock_check_input_hash(env_file: Path, lock_file: Path, conda: Path):
    args = [
        conda_lock_cli(),
        "lock",
        "--check-input-hash",
        "-f",
        env_file.name,
        "--lockfile",
        lock_file.name,
        "--conda",
        str(conda),
    ]
    for platform in BOTH:
        args += ["-p", platform]
    return subprocess.run(args, cwd=env_file.parent, capture_output=True, text=True, timeout=120)


def test_conda_lock_check_input_hash_skips_our_lock(env_file: Path, tmp_path: Path) -> None:
    locked = lock_env(conda_spec(env_file, BOTH))
    before = locked.lock_file.read_bytes()
    conda = _fake_conda(tmp_path)
    proc = _conda_lock_check_input_hash(env_file, locked.lock_file, conda)
    assert proc.returncode == 0, proc.stderr
    assert "Spec hash already locked for ['linux-64', 'osx-arm64']. Skipping solve." in proc.stderr
    assert locked.lock_file.read_bytes() == before

    # and the other way round: after an edit conda-lock wants to solve, and so do we
    env_file.write_text(env_file.read_text() + "  - liba\n")
    proc = _conda_lock_check_input_hash(env_file, locked.lock_file, conda)
    assert proc.returncode != 0
    assert "fake conda asked to solve" in proc.stderr + proc.stdout
    fresh, why = check_lock(conda_spec(env_file, BOTH))
    assert not fresh and "sklearn.yml changed since it was locked" in why


def test_content_hash_is_the_one_conda_lock_computes(env_file: Path) -> None:
    from conda_lock.content_hash import compute_content_hashes
    from conda_lock.src_parser import make_lock_spec
    from conda_lock.virtual_package import default_virtual_package_repodata

    locked = lock_env(conda_spec(env_file, BOTH))
    spec = make_lock_spec(
        src_files=[env_file],
        platform_overrides=BOTH,
        mapping_url="https://example.invalid/not-fetched.json",
    )
    expected = compute_content_hashes(spec, default_virtual_package_repodata())
    written = yaml.safe_load(locked.lock_file.read_text())["metadata"]["content_hash"]
    assert written == expected


def test_check_round_trip_and_load(env_file: Path) -> None:
    spec = conda_spec(env_file)
    fresh, why = check_lock(spec)
    assert not fresh and "sklearn.conda-lock.yml does not exist" in why
    with pytest.raises(EnvFileError) as err:
        load_env(spec)
    assert "run `xrun lock SPEC` (or pass --relock)" in str(err.value)
    assert err.value.exit_code == 2

    locked = lock_env(spec)
    assert check_lock(spec) == (True, "sklearn.conda-lock.yml is up to date")
    assert load_env(spec).lock_hash == locked.lock_hash

    env_file.write_text(env_file.read_text().replace("- libc", "- libc >=3"))
    fresh, why = check_lock(spec)
    assert not fresh and "changed since it was locked" in why
    with pytest.raises(EnvFileError) as err:
        load_env(spec)
    assert str(err.value).startswith(f"{env_file}: sklearn.yml changed since it was locked")
    assert "xrun lock SPEC" in str(err.value)
    relocked = load_env(spec, relock=True)
    assert check_lock(spec)[0] and relocked.lock_file == locked.lock_file


def test_a_new_platform_makes_the_lock_stale(env_file: Path) -> None:
    lock_env(conda_spec(env_file, ["linux-64"]))
    fresh, why = check_lock(conda_spec(env_file, BOTH))
    assert not fresh and "no solution for osx-arm64" in why


def test_a_driver_with_another_distributed_warns_but_the_lock_stays_usable(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    locked = lock_env(conda_spec(env_file))
    import runner.env.runtime as runtime

    monkeypatch.setattr(runtime, "driver_distributed_version", lambda: "1999.1.0")
    assert check_lock(conda_spec(env_file))[0]  # a bundle's lock must stay reproducible
    with caplog.at_level("WARNING", logger="runner.env.lock"):
        assert load_env(conda_spec(env_file)).lock_hash == locked.lock_hash
    assert f"pins distributed {DISTRIBUTED} but this driver runs 1999.1.0; relock" in caplog.text


def test_unsolvable_environment_carries_the_solvers_explanation(
    tmp_path: Path, channel: Path
) -> None:
    env_file = write_env_yml(tmp_path, channel, "- python\n- libc >=4\n")
    with pytest.raises(EnvFileError) as err:
        lock_env(conda_spec(env_file))
    message = str(err.value)
    assert message.startswith(f"{env_file}: cannot solve the environment for linux-64")
    assert "No candidates were found for libc >=4" in message
    assert err.value.exit_code == 2
    assert not lock_path_for(env_file, "conda").exists()


def test_conflict_names_both_sides(tmp_path: Path, channel: Path) -> None:
    env_file = write_env_yml(tmp_path, channel, "- python\n- libb\n- liba <1\n")
    with pytest.raises(EnvFileError) as err:
        lock_env(conda_spec(env_file))
    assert "liba" in str(err.value) and "libb" in str(err.value)


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("channels: [x]\ndependencies:\n  - python\n - libc\n", 4, "not valid YAML"),
        ("channels: [x]\ndependencies:\n  - python\n  - foo ==>1\n", 4, "invalid package spec"),
        ("channels: [x]\ndependecies:\n  - python\n", 2, "did you mean 'dependencies'"),
        ("channels: [x]\ndependencies: python\n", 2, "dependencies: expected a list"),
        ("channels: [x]\ndependencies:\n  - pip: six\n", 3, "dependencies.pip: expected a list"),
        ("dependencies:\n  - python\n", 1, "no channels"),
    ],
)
def test_malformed_environment_yml_names_file_and_line(
    tmp_path: Path, body: str, line: int, what: str
) -> None:
    env_file = tmp_path / "env.yml"
    env_file.write_text(body)
    with pytest.raises(EnvFileError) as err:
        lock_env(conda_spec(env_file))
    assert err.value.file == str(env_file)
    assert err.value.line == line
    assert str(err.value).startswith(f"{env_file}:{line}: ")
    assert what in str(err.value)
    assert err.value.exit_code == 2
