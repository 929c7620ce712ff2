"""Trust boundaries, each written as the attack: a crafted bundle, archive,
spec, cache entry or trial. Bundles, archives and cache entries come from
someone else; nothing in them may choose where xrun writes, reach a protected
file, leak a secret, drive the terminal or grow without bound.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.bundle.manifest import MANIFEST

REPO = Path(__file__).resolve().parents[1]
PROTECTED = b"PROTECTED-7d1c0a55e3b94f26-CONTENT"  # stands for /etc/shadow

TRAIN = '''
def train(params, ctx):
    print("trained", params["x"])
    return {"score": float(params["x"])}
'''


@dataclass
class Bounded:
    code: int
    out: str
    err: str
    max_rss_mb: float
    seconds: float


# The measured xrun is forked from this small launcher, not from pytest: Linux
# carries the forked parent's peak RSS across exec into the child's
# ``ru_maxrss``, so a child of a 450 MB test process would "use" 450 MB before
# running a line of xrun.
_LAUNCHER = """
import json, os, resource, sys
out, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
    os.execv(cmd[0], cmd)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as fh:
    json.dump({"code": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}, fh)
"""


def bounded_xrun(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Bounded:
    """The real `xrun` in a subprocess, with its own peak RSS (``wait4`` in a
    small launcher) and wall time; an address-space cap keeps a runaway from
    taking the machine."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "usage.json"
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(result), sys.executable, "-m", "runner.cli",
                                 *map(str, args)], cwd=cwd, env={**os.environ, "COLUMNS": "200", **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            pytest.fail(f"xrun {' '.join(map(str, args))} still running after {timeout}s")
        seconds = time.monotonic() - start
        usage = json.loads(result.read_text())
    return Bounded(usage["code"], out.decode(errors="replace"), err.decode(errors="replace"),
                   usage["maxrss_kb"] / 1024, seconds)  # fmt: skip


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` (links as their target, files as bytes)."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
        else:
            out[rel] = "dir"
    return out


def assert_nowhere(needle: bytes, *places: Path | str | bytes) -> None:
    """No byte sequence ``needle`` in any file under the given directories, or in the given outputs."""
    for place in places:
        if isinstance(place, (str, bytes)):
            text = place.encode() if isinstance(place, str) else place
            assert needle not in text, text[:2000]
            continue
        for path in place.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert needle not in path.read_bytes(), path


@dataclass
class Made:
    project: Path
    spec: Path
    cache: Path
    bundle: Path


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    """One small real run (local backend), shared: tests copy its bundle and cache."""
    project = tmp_path_factory.mktemp("tb-project")
    (project / "experiments").mkdir()
    (project / "experiments" / "__init__.py").write_text("")
    (project / "experiments" / "tb.py").write_text(TRAIN)
    spec = project / "tb.yaml"
    spec.write_text("output: runs\nname: tb\nxrun: 1\ntrial: {function: 'experiments.tb:train'}\n"
                    + "sweep: {method: list, points: [{x: 1}, {x: 2}], objective: {metric: score}}\n"
                    + "code: {include: ['experiments/*.py']}\ncluster: {workers: 1}\n")  # fmt: skip
    cache = tmp_path_factory.mktemp("tb-cache")
    res = bounded_xrun(spec, "-q", cwd=project, env={"XRUN_CACHE_DIR": str(cache)}, timeout=300)
    assert res.code == 0, res.err
    return Made(project, spec, cache, Path(res.out.strip().splitlines()[-1]))


def copy_bundle(made: Made, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(made.bundle, where / made.bundle.name, symlinks=True))


def forge_manifest(bundle: Path, extra: dict[str, bytes]) -> None:
    """What an attacker does after editing a bundle: recompute MANIFEST.sha256,
    listing ``extra`` entries (links, FIFOs) with the digest of the given bytes."""
    lines = []
    for path in sorted(bundle.rglob("*")):  # as sha256sum would: regular files, links not followed
        rel = path.relative_to(bundle).as_posix()
        if rel != MANIFEST and not path.is_symlink() and stat.S_ISREG(path.lstat().st_mode):
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
    lines += [f"{hashlib.sha256(data).hexdigest()}  {rel}\n" for rel, data in extra.items()]
    (bundle / MANIFEST).write_text("".join(lines))


# ------------------------------------------------------------------ 1. reproduce writes


def test_reproduce_refuses_env_file_paths_that_leave_its_work_directory(made: Made, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    bundle = copy_bundle(made, outside / "bundles")
    (outside / "bundles" / "adv").mkdir()
    (outside / "bundles" / "adv" / "PWN").write_text("pwned")  # what env/../../adv/PWN reads
    env_info = json.loads((bundle / "env" / "env.json").read_text())
    env_info["env_file"] = "../../adv/PWN"
    (bundle / "env" / "env.json").write_text(json.dumps(env_info))
    forge_manifest(bundle, {})
    assert bounded_xrun("verify", bundle, cwd=tmp_path).code == 0  # the forged bundle verifies
    tmpdir = tmp_path / "tmp"  # reproduce's work directory is made in here
    (tmpdir / "adv").mkdir(parents=True)  # where env/../../adv/PWN lands from tmp/xrun-reproduce-*/env
    before = tree(outside)
    res = bounded_xrun("reproduce", bundle, "-o", tmp_path / "new", cwd=tmp_path,
                       env={"TMPDIR": str(tmpdir), "XRUN_CACHE_DIR": str(tmp_path / "cache")})  # fmt: skip
    assert res.code == 2, res.err
    assert "refusing the path '../../adv/PWN' read from the bundle: '../../adv/PWN': escapes" in res.err
    assert "Traceback" not in res.err
    assert tree(outside) == before
    assert [p.name for p in tmpdir.iterdir()] == ["adv"]  # the work directory is gone, nothing beside it
    assert list((tmpdir / "adv").iterdir()) == []
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------ 2. code snapshots


def test_code_include_leaving_the_root_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "proj" / "experiments").mkdir(parents=True)
    (tmp_path / "proj" / "experiments" / "tb.py").write_text(TRAIN)
    spec = tmp_path / "proj" / "s.yaml"
    spec.write_text("xrun: 1\nname: esc\ntrial: {function: 'experiments.tb:train'}\n"
                    "code:\n  include:\n    - 'experiments/*.py'\n    - '../../../etc/*'\n")  # fmt: skip
    res = bounded_xrun("validate", spec, cwd=tmp_path)
    assert res.code == 2, res.out + res.err
    assert "s.yaml:7 code.include[1]: '../../../etc/*' leaves code.root" in res.err
    spec.write_text(spec.read_text().replace("../../../etc/*", "/etc/*"))
    res = bounded_xrun("validate", spec, cwd=tmp_path)
    assert res.code == 2 and "code.include[1]: '/etc/*' is absolute" in res.err


def test_symlink_out_of_the_code_root_is_never_packed(tmp_path: Path) -> None:
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "shadow.py").write_bytes(PROTECTED)
    proj = tmp_path / "proj"
    (proj / "experiments").mkdir(parents=True)
    (proj / "experiments" / "__init__.py").write_text("")
    (proj / "experiments" / "tb.py").write_text(TRAIN)
    (proj / "experiments" / "shadow.py").symlink_to(secret_dir / "shadow.py")
    (proj / "linked").symlink_to(secret_dir, target_is_directory=True)
    spec = proj / "s.yaml"
    spec.write_text("xrun: 1\nname: links\ntrial: {function: 'experiments.tb:train'}\noutput: runs\n"
                    "sweep: {method: list, points: [{x: 1}]}\ncluster: {workers: 1}\n")  # default include **/*.py
    res = bounded_xrun(spec, cwd=tmp_path, env={"XRUN_CACHE_DIR": str(tmp_path / "cache")}, timeout=300)
    assert res.code == 0, res.err
    assert "link(s) leading outside code.root" in res.err and "experiments/shadow.py" in res.err
    bundle = Path(res.out.strip().splitlines()[-1])
    files = json.loads((bundle / "code" / "files.json").read_text())
    assert sorted(files) == ["experiments/__init__.py", "experiments/tb.py"]
    with tarfile.open(bundle / "code" / "source.tar.gz") as tar:
        packed = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())  # type: ignore[union-attr]
    assert_nowhere(PROTECTED, packed, bundle, tmp_path / "cache", res.out, res.err)


# ------------------------------------------------------------------ 3. links inside a bundle


def test_links_in_a_bundle_fail_verify_and_are_never_packed(made: Made, tmp_path: Path) -> None:
    protected = tmp_path / "shadow"
    protected.write_bytes(PROTECTED)
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key.txt").write_bytes(PROTECTED)
    bundle = copy_bundle(made, tmp_path / "b")
    (bundle / "logs" / "t00000.log").unlink()
    (bundle / "logs" / "t00000.log").symlink_to(protected)  # listed in MANIFEST, with the target's digest
    (bundle / "artifacts" / "t00001").symlink_to(tmp_path / "private", target_is_directory=True)  # unlisted
    forge_manifest(bundle, {"logs/t00000.log": PROTECTED})
    res = bounded_xrun("verify", bundle, cwd=tmp_path)
    assert res.code == 1, res.err
    assert "not a regular file: artifacts/t00001 (a symbolic link)" in res.err
    assert "not a regular file: logs/t00000.log (a symbolic link)" in res.err
    packed = bounded_xrun("pack", bundle, "-o", tmp_path / "out" / "b.tar.gz", cwd=tmp_path)
    assert packed.code == 2, packed.err
    assert "refusing to pack links or special files: artifacts/t00001 (a symbolic link)" in packed.err
    assert not (tmp_path / "out" / "b.tar.gz").exists()
    assert_nowhere(PROTECTED, res.out, res.err, packed.out, packed.err, tmp_path / "out")


# ------------------------------------------------------------------ 4. secrets

LEAKY = '''
import os

def train(params, ctx):
    token = os.environ["XRUN_TB_TOKEN"]
    ctx.log(note=token, step=1)
    ctx.log(**{"loss_" + token: 0.5})
    os.system("echo subprocess says $XRUN_TB_TOKEN; echo and to stderr $XRUN_TB_TOKEN >&2")
    with open(os.path.join(ctx.artifact_dir, "model-" + token + ".txt"), "w") as fh:
        fh.write("weights")
    return {"score": 1.0, "acc_" + token: 2.0}
'''


def _leaky_spec(proj: Path, cluster: str) -> Path:
    (proj / "experiments").mkdir(parents=True)
    (proj / "experiments" / "__init__.py").write_text("")
    (proj / "experiments" / "leaky.py").write_text(LEAKY)
    spec = proj / "s.yaml"
    spec.write_text(f"xrun: 1\nname: leaky\ntrial: {{function: 'experiments.leaky:train'}}\noutput: runs\n"
                    f"sweep: {{method: list, points: [{{x: 1}}]}}\nsecrets: [XRUN_TB_TOKEN]\ncluster: {cluster}\n")  # fmt: skip
    return spec


def test_secret_never_leaves_through_history_names_artifacts_or_subprocess_output(tmp_path: Path) -> None:
    secret = "tok-5ec7e7-a1b2c3d4e5f6a7b8"
    spec = _leaky_spec(tmp_path / "proj", "{workers: 1}")
    res = bounded_xrun(spec, cwd=tmp_path, env={"XRUN_TB_TOKEN": secret, "XRUN_CACHE_DIR": str(tmp_path / "cache")},
                       timeout=300)  # fmt: skip
    assert res.code == 0, res.err
    bundle = Path(res.out.strip().splitlines()[-1])
    # (local workers write their output to their own log files; the address test below reads one)
    record = json.loads((bundle / "trials.jsonl").read_text().splitlines()[-1])
    assert record["history"][0]["note"] == "[secret]"
    assert set(record["metrics"]) == {"score", "acc_[secret]"}
    assert (bundle / "artifacts" / record["id"] / "model-[secret].txt").is_file()
    names = "\n".join(str(p) for root in (bundle, tmp_path / "cache") for p in root.rglob("*"))
    assert secret not in names
    assert_nowhere(secret.encode(), bundle, tmp_path / "cache", res.out, res.err)


@pytest.fixture
def logged_cluster(tmp_path: Path):
    """A `dask scheduler` and two workers whose output goes to files, as on a shared machine."""
    sched_file = tmp_path / "scheduler.json"
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(sched_file), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    deadline = time.monotonic() + 60
    while not sched_file.exists():
        assert time.monotonic() < deadline, "scheduler did not start"
        time.sleep(0.1)
    time.sleep(0.3)
    address = json.loads(sched_file.read_text())["address"]
    for log in logs:
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                           "--no-dashboard"], stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path))  # fmt: skip
    yield address, logs
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def test_secret_leaves_the_shared_workers_environment_after_the_run(tmp_path: Path, logged_cluster) -> None:
    address, logs = logged_cluster
    secret = "tok-addr-0c9d8e7f6a5b4c3d2e1f"
    spec = _leaky_spec(tmp_path / "proj", f"{{backend: address, address: '{address}', workers: 2}}")
    res = bounded_xrun(spec, cwd=tmp_path, env={"XRUN_TB_TOKEN": secret, "XRUN_CACHE_DIR": str(tmp_path / "cache")},
                       timeout=300)  # fmt: skip
    assert res.code == 0, res.err
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        seen = client.run(lambda: {k: v for k, v in __import__("os").environ.items() if "tok-addr" in v or k == "XRUN_TB_TOKEN"})
        plugins = client.run(lambda dask_worker: list(dask_worker.plugins))
        events = repr(client.get_events())  # results streamed through the shared scheduler's event log
    assert seen and all(v == {} for v in seen.values()), seen
    assert "result" in events and secret not in events
    assert all("xrun" not in names for names in plugins.values()), plugins
    worker_output = b"".join(log.read_bytes() for log in logs)
    assert b"subprocess says [secret]" in worker_output  # a subprocess's output, redacted on the worker
    assert_nowhere(secret.encode(), Path(res.out.strip().splitlines()[-1]), tmp_path / "cache", res.out, res.err,
                   worker_output)  # fmt: skip


# ------------------------------------------------------------------ 5. terminal output


def test_show_verify_and_diff_never_print_escapes_or_markup_from_a_bundle(made: Made, tmp_path: Path) -> None:
    bundle = copy_bundle(made, tmp_path / "b")
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["run_id"] = "[link=https://evil.example/]click[/link]\x1b]0;pwned\x07\x1b[2J"
    meta["status"] = "[blink]ok[/blink]"
    (bundle / "bundle.json").write_text(json.dumps(meta))
    lines = (bundle / "trials.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    rec.update(status="error", failure_class="\x1b[31mred", error="[bold red]boom\x1b[?1049h", params={"x": "\x1b]8;;http://x\x07y"})
    (bundle / "trials.jsonl").write_text("\n".join([*lines, json.dumps(rec)]) + "\n")
    (bundle / "logs" / "\x1b[2Jwiped.log").write_text("x")  # a file name: reported by verify
    other = copy_bundle(made, tmp_path / "c")
    outputs = [bounded_xrun("show", bundle, cwd=tmp_path), bounded_xrun("verify", bundle, cwd=tmp_path),
               bounded_xrun("diff", bundle, other, cwd=tmp_path), bounded_xrun("ls", tmp_path / "b", cwd=tmp_path)]  # fmt: skip
    assert [r.code for r in outputs] == [0, 1, 0, 0], [r.err for r in outputs]
    for r in outputs:
        assert "\x1b" not in r.out + r.err and "\x07" not in r.out + r.err
        assert "Traceback" not in r.err
    show = outputs[0].out
    assert "[link=https://evil.example/]click[/link]\\x1b]0;pwned\\x07" in show  # shown as text, not obeyed
    assert "[bold red]boom\\x1b[?1049h" in show
    assert "\\x1b[2Jwiped.log" in outputs[1].err
    assert "[link=https://evil.example/]click[/link]" in outputs[2].out + outputs[3].out


def test_lone_surrogates_in_a_bundle_that_verifies_are_shown_and_reported(made: Made, tmp_path: Path) -> None:
    """A JSON escape ("\\ud800") makes a string no text encoding can write: once,
    `xrun show` of a bundle holding one ended in an internal error and `xrun report`
    could not write report.html (its plots failed with a traceback first). The
    bundle's manifest is made again, as a forger would, so it verifies."""
    from runner.bundle.manifest import write_manifest

    bundle = copy_bundle(made, tmp_path / "b")
    lines = (bundle / "trials.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    rec.update(params={"x": "\ud800odd"}, metrics={"score": 1.0, "m\udfff": 2.0})
    failed = {**rec, "id": "t09999", "status": "error", "failure_class": "error", "error": "boom \ud83d", "metrics": {}}
    (bundle / "trials.jsonl").write_text("\n".join([*lines, json.dumps(rec), json.dumps(failed)]) + "\n")
    write_manifest(bundle)
    outputs = [bounded_xrun("verify", bundle, cwd=tmp_path), bounded_xrun("show", bundle, cwd=tmp_path),
               bounded_xrun("report", bundle, cwd=tmp_path, timeout=120)]  # fmt: skip
    assert [r.code for r in outputs] == [0, 0, 0], [r.err for r in outputs]
    for r in outputs:
        assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    assert "\\ud800odd" in outputs[1].out and "boom \\ud83d" in outputs[1].out  # shown as escapes
    page = (bundle / "report.html").read_text(encoding="utf-8")
    assert "t09999" in page and "?odd" in page
    assert bounded_xrun("verify", bundle, cwd=tmp_path).code == 0  # re-sealed whole


# ------------------------------------------------------------------ 6. re-sealing


def test_report_refuses_to_reseal_a_tampered_bundle(made: Made, tmp_path: Path) -> None:
    bundle = copy_bundle(made, tmp_path / "b")
    text = (bundle / "trials.jsonl").read_text()
    (bundle / "trials.jsonl").write_text(text.replace('"score":1.0', '"score":99.0'))
    manifest = (bundle / MANIFEST).read_bytes()
    assert bounded_xrun("verify", bundle, cwd=tmp_path).code == 1
    res = bounded_xrun("report", bundle, cwd=tmp_path)
    assert res.code == 1, res.err
    assert "refusing to re-seal a bundle that does not verify" in res.err and "changed: trials.jsonl" in res.err
    assert (bundle / MANIFEST).read_bytes() == manifest
    assert bounded_xrun("verify", bundle, cwd=tmp_path).code == 1
    good = copy_bundle(made, tmp_path / "g")  # an intact bundle is re-sealed, and still verifies
    assert bounded_xrun("report", good, cwd=tmp_path, timeout=120).code == 0
    assert bounded_xrun("verify", good, cwd=tmp_path).code == 0


# ------------------------------------------------------------------ 9. resource bounds

RSS_LIMIT_MB = 400  # an xrun command that reads little stays far below this


def _bomb(path: Path, size: int) -> None:
    """A .tar.gz whose one member is ``size`` zero bytes: a few MB expanding to ``size``."""
    info = tarfile.TarInfo("bomb/bundle.json")
    info.size = size
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        gz.write(info.tobuf(format=tarfile.PAX_FORMAT))
        zeros = bytes(1 << 22)
        for _ in range(size // len(zeros)):
            gz.write(zeros)
        gz.write(bytes(2 * 512))  # end of archive


def test_the_memory_measure_is_xrun_s_own_not_the_test_process_s(tmp_path: Path) -> None:
    """The bound below means something only if the figure is xrun's: a test
    process holding 600 MB must not show up in the measured peak."""
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page
    res = bounded_xrun("--help", cwd=tmp_path)
    assert res.code == 0, res.err
    assert res.max_rss_mb < 300, res.max_rss_mb
    del ballast


def test_archive_bomb_is_refused_in_bounded_memory_and_time(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    _bomb(archive, 2**30)
    assert archive.stat().st_size < 8 * 2**20
    cache = tmp_path / "cache"
    res = bounded_xrun("verify", archive, cwd=tmp_path, env={"XRUN_CACHE_DIR": str(cache)})
    assert res.code == 2, res.err
    assert "unsafe archive, not extracted" in res.err and "an archive bomb?" in res.err
    assert res.max_rss_mb < RSS_LIMIT_MB and res.seconds < 30, (res.max_rss_mb, res.seconds)
    written = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0
    assert written < 2**20


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "link-to-dev-zero"])
def test_spec_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    spec = tmp_path / "spec.yaml"
    if kind == "fifo":
        os.mkfifo(spec)
    elif kind == "link-to-dev-zero":
        spec.symlink_to("/dev/zero")
    else:
        spec = Path("/dev/zero")
    res = bounded_xrun("validate", spec, cwd=tmp_path, timeout=30)
    assert res.code == 2, res.err
    assert "cannot read spec: not a regular file" in res.err
    assert res.max_rss_mb < RSS_LIMIT_MB


def test_manifest_naming_a_fifo_or_a_link_to_dev_zero_fails_verify_quickly(made: Made, tmp_path: Path) -> None:
    bundle = copy_bundle(made, tmp_path / "b")
    os.mkfifo(bundle / "logs" / "pipe.log")
    (bundle / "logs" / "zero.log").symlink_to("/dev/zero")
    forge_manifest(bundle, {"logs/pipe.log": b"", "logs/zero.log": b""})
    for args in (("verify", bundle), ("show", bundle), ("pack", bundle, "-o", tmp_path / "x.tar.gz")):
        res = bounded_xrun(*args, cwd=tmp_path, timeout=30)
        assert res.code in (0, 1, 2) and "Traceback" not in res.err, res.err
        assert res.max_rss_mb < RSS_LIMIT_MB
    res = bounded_xrun("verify", bundle, cwd=tmp_path, timeout=30)
    assert res.code == 1
    assert "logs/pipe.log (a FIFO)" in res.err and "logs/zero.log (a symbolic link)" in res.err


def test_cache_database_linked_to_dev_zero_is_all_misses(made: Made, tmp_path: Path) -> None:
    cache = Path(shutil.copytree(made.cache, tmp_path / "cache", symlinks=True))
    db = cache / "trials.sqlite"
    assert db.is_file()
    for extra in ("trials.sqlite-wal", "trials.sqlite-shm"):
        (cache / extra).unlink(missing_ok=True)
    db.unlink()
    db.symlink_to("/dev/zero")
    res = bounded_xrun("plan", made.spec, "--json", cwd=made.project, env={"XRUN_CACHE_DIR": str(cache)}, timeout=60)
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["cached"] == 0 and info["to_run"] == 2
    assert res.max_rss_mb < RSS_LIMIT_MB


def test_oversized_cache_row_is_a_miss_without_reading_it(made: Made, tmp_path: Path) -> None:
    import sqlite3

    cache = Path(shutil.copytree(made.cache, tmp_path / "cache", symlinks=True))
    conn = sqlite3.connect(cache / "trials.sqlite")
    (key,) = conn.execute("SELECT key FROM results ORDER BY key LIMIT 1").fetchone()
    conn.execute("UPDATE results SET body = zeroblob(?) WHERE key = ?", ((RSS_LIMIT_MB + 100) * 2**20, key))
    conn.commit()
    conn.close()
    res = bounded_xrun("plan", made.spec, "--json", cwd=made.project, env={"XRUN_CACHE_DIR": str(cache)}, timeout=120)
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["cached"] == 1 and info["to_run"] == 1
    assert res.max_rss_mb < RSS_LIMIT_MB


@pytest.mark.parametrize(
    ("sweep", "where"),
    [
        ("{method: grid, parameters: {a: [0,1,2,3,4,5,6,7,8,9], b: [0,1,2,3,4,5,6,7,8,9], c: [0,1,2,3,4,5,6,7,8,9], "
         "d: [0,1,2,3,4,5,6,7,8,9], e: [0,1,2,3,4,5,6,7,8,9], f: [0,1,2,3,4,5,6,7,8,9], g: [0,1,2,3,4,5,6,7,8,9], "
         "h: [0,1,2,3,4,5,6,7,8,9], i: [0,1,2,3,4,5,6,7,8,9], j: [0,1,2,3,4,5,6,7,8,9], k: [0,1,2,3,4,5,6,7,8,9], "
         "l: [0,1,2,3,4,5,6,7,8,9]}}", "sweep.parameters"),
        ("{method: random, samples: 10000000, repeats: 10000, parameters: {a: {uniform: [0, 1]}}}", "sweep.samples"),
        ("{method: grid, repeats: 10000, parameters: {a: [0,1,2,3,4,5,6,7,8,9], b: [0,1,2,3,4,5,6,7,8,9], "
         "c: [0,1,2,3,4,5,6,7,8,9]}}", "sweep.repeats"),
    ],
    ids=["grid-1e12", "random-1e11", "repeats-1e7"],
)
def test_huge_sweeps_are_refused_by_validate_and_plan(tmp_path: Path, sweep: str, where: str) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "tb.py").write_text(TRAIN)
    spec = tmp_path / "big.yaml"
    spec.write_text(f"xrun: 1\nname: big\ntrial: {{function: 'experiments.tb:train'}}\nsweep: {sweep}\n")
    for command in ("validate", "plan"):
        res = bounded_xrun(command, spec, cwd=tmp_path, timeout=60)
        assert res.code == 2, (command, res.out, res.err)
        assert f"big.yaml:4 {where}: the sweep has " in res.err and "trials (more than 1,000,000)" in res.err
        assert res.max_rss_mb < RSS_LIMIT_MB and res.seconds < 30, (res.max_rss_mb, res.seconds)


def test_a_trial_error_with_markup_and_escapes_is_shown_as_text(tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mk.py").write_text(
        'def train(params, ctx):\n    raise ValueError("closing [/bold] and \\x1b]0;title\\x07")\n')
    spec = tmp_path / "s.yaml"
    spec.write_text("xrun: 1\nname: mk\ntrial: {function: 'experiments.mk:train'}\noutput: runs\n"
                    "sweep: {method: list, points: [{x: 1}]}\ncluster: {workers: 1}\n")  # fmt: skip
    res = bounded_xrun(spec, cwd=tmp_path, env={"XRUN_CACHE_DIR": str(tmp_path / "cache")}, timeout=300)
    assert res.code == 1, res.err  # the trial failed; the display did not
    assert "internal error" not in res.err and "\x1b" not in res.out + res.err
    assert "ValueError: closing [/bold] and \\x1b]0;title\\x07" in res.err
