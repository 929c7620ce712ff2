"""`xrun lock` keeps the versions an existing lock pins while they still satisfy
the environment file (as `uv lock` and `conda-lock` do); `--upgrade` and
`--upgrade-package NAME` move them."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

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


def _publish_wheel(index: Path, name: str, version: str) -> str:
    """Add a pure-python wheel of ``name`` ``version`` to a PEP 503 index folder
    (links with sha256 fragments); returns the wheel's sha256."""
    folder = index / name
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}\n"
        for p, d in files.items()
    )
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, data in files.items():
            whl.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    links = "".join(
        f'<a href="{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n'
        for w in sorted(folder.glob("*.whl"))
    )
    (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return hashlib.sha256((folder / f"{name}-{version}-py3-none-any.whl").read_bytes()).hexdigest()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(folder: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_conda_pip_section_relock_keeps_pins_until_upgraded(
    tmp_path: Path, channel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local package index stands in for PyPI; it has pinme 1.0 when the lock is made.
    index = tmp_path / "index"
    old_sha = _publish_wheel(index, "pinme", "1.0")
    project = tmp_path / "proj"
    env_file = write_env_yml(project, channel, "- python 3.11.*\n- pip:\n  - pinme\n", name="environment.yaml")
    (project / "trial.py").write_text("def f(params, ctx):\n    return {}\n")
    (project / "spec.yaml").write_text(
        "trial: {function: trial:f}\nenvironment: {platforms: [linux-64], conda: environment.yaml}\n"
        "name: pip-pins\nxrun: 1\n"
    )
    lock = project / "environment.conda-lock.yml"
    with _serve(index) as url:
        uv_env = {"UV_INDEX_URL": url, "UV_NO_CACHE": "1"}
        for key, value in uv_env.items():
            monkeypatch.setenv(key, value)
        first = xrun("lock", "spec.yaml", cwd=project, env=uv_env)
        assert first.code == 0, first.err
        assert pinned(conda_spec(env_file))["pinme"] == "1.0"
        # pinme 2.0 is published; a relock (a clone, a new machine) keeps the committed 1.0.
        new_sha = _publish_wheel(index, "pinme", "2.0")
        again = xrun("lock", project / "spec.yaml", cwd=tmp_path, env=uv_env)
        assert again.code == 0, again.err
        assert "changed:" not in again.err
        assert pinned(conda_spec(env_file))["pinme"] == "1.0"
        assert old_sha in lock.read_text() and new_sha not in lock.read_text()
        # Releasing a conda package's pin leaves the pip pin alone; releasing pinme's moves it.
        assert lock_env(conda_spec(env_file), upgrade_packages=["python"]).packages["pinme"] == "1.0"
        moved = xrun("lock", "spec.yaml", "--upgrade-package", "PinMe", cwd=project, env=uv_env)
        assert moved.code == 0, moved.err
        assert "changed: pinme 1.0 → 2.0" in moved.err
        assert new_sha in lock.read_text() and old_sha not in lock.read_text()
        # A pin the section no longer allows (2.0 now) moves without being asked; relaxed
        # again, the new pin stays; --upgrade releases every pin.
        write_env_yml(project, channel, "- python 3.11.*\n- pip:\n  - pinme<2\n", name="environment.yaml")
        assert lock_env(conda_spec(env_file)).packages["pinme"] == "1.0"
        write_env_yml(project, channel, "- python 3.11.*\n- pip:\n  - pinme\n", name="environment.yaml")
        assert lock_env(conda_spec(env_file)).packages["pinme"] == "1.0"
        assert lock_env(conda_spec(env_file), upgrade=True).packages["pinme"] == "2.0"
