"""Remote data fetch against a real S3-compatible server (moto, started here).

    python bench/storage.py [--mb 200] [--trials 40] [--workers 4] [--repeats 3]

Measures, for one object of --mb MB:

* a plain s3fs copy (``fs.get_file``) — the baseline;
* xrun's fetch-and-verify into an empty node cache (download + sha256 +
  read-only + rename), the same code workers run (runner.worker.fetch);
* a cached fetch in a new process (the copy is hashed once before it is trusted);
* a --trials sweep on --workers local workers whose every trial reads the
  object through ``ctx.data``: wall time and how many times the server sent it.

Writes its own section of bench/RESULTS.md (between the storage markers, other
sections untouched) and bench/storage.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
XRUN = str(Path(sys.executable).with_name("xrun"))
BEGIN, END = "<!-- storage:begin -->", "<!-- storage:end -->"
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}


class Server:
    """moto's S3 on 127.0.0.1 in a thread, counting per path the downloads it
    starts (GETs of the whole object; s3fs may resume one with ranged GETs, and
    hashing on the driver reads in ranges too)."""

    def __init__(self) -> None:
        from moto import server as moto_server
        from werkzeug.serving import make_server

        app = moto_server.DomainDispatcherApplication(moto_server.create_backend_app)
        self.downloads: Counter[str] = Counter()
        self.ranged: Counter[str] = Counter()

        def counting(environ: dict, start_response):  # type: ignore[no-untyped-def]
            if environ.get("REQUEST_METHOD") == "GET" and not environ.get("QUERY_STRING"):
                path = environ.get("PATH_INFO", "")
                (self.ranged if environ.get("HTTP_RANGE") else self.downloads)[path] += 1
            return app(environ, start_response)

        self.httpd = make_server("127.0.0.1", 0, counting, threaded=True)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=BENCH)
    args = ap.parse_args(argv)

    import s3fs

    from runner.worker import fetch

    server = Server()
    os.environ.update(CREDS, AWS_ENDPOINT_URL=server.endpoint)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("bench-data")
    blob = os.urandom(args.mb * 2**20)
    digest = hashlib.sha256(blob).hexdigest()
    fs.pipe("bench-data/big.bin", blob)
    del blob
    url, key = "s3://bench-data/big.bin", "/bench-data/big.bin"
    size = args.mb * 2**20
    work = Path(tempfile.mkdtemp(prefix="xrun-bench-storage-"))

    # Alternate the two so load on the machine hits both alike.
    plain, ours = [], []
    for i in range(args.repeats):
        target = work / f"plain-{i}.bin"
        plain.append(timed(lambda target=target: fs.get_file("bench-data/big.bin", str(target))))
        target.unlink()
        root = work / f"cache-{i}"
        ours.append(timed(lambda root=root: fetch.fetch_verified(url, digest, root)))
    root = work / "cache-0"
    code = "import sys, pathlib; from runner.worker import fetch; fetch.fetch_verified(sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]))"
    cached = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, url, digest, str(root)], check=True)
        cached.append(time.perf_counter() - t0)
    startup = statistics.median(timed(lambda: subprocess.run([sys.executable, "-c", "from runner.worker import fetch"], check=True)) for _ in range(3))

    # The sweep: every trial reads the object through ctx.data.
    proj = work / "proj"
    (proj / "experiments").mkdir(parents=True)
    (proj / "experiments" / "__init__.py").write_text("")
    (proj / "experiments" / "reader.py").write_text(textwrap.dedent("""
        import os
        def train(params, ctx):
            return {"bytes": os.path.getsize(ctx.data["big"]), "i": params["i"]}
    """))
    spec = proj / "spec.yaml"
    sweep: dict[str, Any] = {}
    for pinned in (True, False):
        pin = f', sha256: "{digest}"' if pinned else ""
        spec.write_text(textwrap.dedent(f"""
            xrun: 1
            name: bench-storage
            trial: {{function: "experiments.reader:train"}}
            data: {{big: {{url: "{url}"{pin}}}}}
            sweep: {{parameters: {{i: {list(range(args.trials))}}}}}
            secrets: [AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]
            cluster: {{workers: {args.workers}}}
        """))
        before, ranged = server.downloads[key], server.ranged[key]
        env = {**os.environ, "XRUN_CACHE_DIR": str(work / "xrun-cache"), "XRUN_DATA_CACHE": str(work / f"node-{pinned}")}
        t0 = time.perf_counter()
        res = subprocess.run([XRUN, "run", str(spec), "-q", "--no-cache"], cwd=proj, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            raise SystemExit(f"sweep failed ({res.returncode}):\n{res.stderr[-3000:]}")
        bundle = Path(res.stdout.strip().splitlines()[-1])
        records = [json.loads(line) for line in (bundle / "trials.jsonl").read_text().splitlines()]
        assert all(r["metrics"]["bytes"] == size for r in records) and len(records) == args.trials
        sweep["pinned" if pinned else "hashed_by_driver"] = {
            "wall_s": round(wall, 2), "downloads": server.downloads[key] - before,
            "ranged_reads": server.ranged[key] - ranged,
            "workers_used": len({r["worker"] for r in records}),
        }

    result = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "object_mb": args.mb, "trials": args.trials, "workers": args.workers, "repeats": args.repeats,
        "plain_s3fs_s": [round(x, 3) for x in plain], "fetch_verify_s": [round(x, 3) for x in ours],
        "cached_new_process_s": [round(x, 3) for x in cached], "python_startup_s": round(startup, 3),
        "ratio": round(statistics.median(ours) / statistics.median(plain), 2), "sweep": sweep,
        "cpus": os.cpu_count(), "load": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    (args.out / "storage.json").write_text(json.dumps(result, indent=2) + "\n")
    write_section(args.out / "RESULTS.md", render(result))
    print(render(result))
    return 0


def render(r: dict[str, Any]) -> str:
    med = statistics.median
    ratio = r["ratio"]
    s = r["sweep"]
    lines = [
        "## Remote data (object storage)",
        "",
        f"`python bench/storage.py` ({r['date']}; {r['cpus']} CPUs, load {r['load'][0]} at the end). One "
        f"{r['object_mb']} MB object on a moto S3 server on 127.0.0.1 (in the benchmark's process); "
        f"median of {r['repeats']} alternating runs.",
        "",
        "| case | runs (s) | median |",
        "|---|---|---|",
        f"| plain s3fs copy (`fs.get_file`) | {', '.join(map(str, r['plain_s3fs_s']))} | {med(r['plain_s3fs_s']):.2f} s |",
        f"| xrun fetch + verify, empty node cache | {', '.join(map(str, r['fetch_verify_s']))} | {med(r['fetch_verify_s']):.2f} s |",
        f"| xrun cached fetch, new process (re-hash once) | {', '.join(map(str, r['cached_new_process_s']))} | {med(r['cached_new_process_s']):.2f} s |",
        "",
        f"- fetch-and-verify / plain copy: **{ratio:.2f}×** (goal ≤ 1.2×: {'MET' if ratio <= 1.2 else 'NOT MET'}); "
        f"the cached case includes {r['python_startup_s']:.2f} s of interpreter start.",
        f"- {r['trials']}-trial sweep on {r['workers']} local workers, every trial reading the object through "
        f"`ctx.data`: sha256 pinned in the spec — {s['pinned']['wall_s']} s, the object downloaded "
        f"{s['pinned']['downloads']} time(s) for the node ({s['pinned']['workers_used']} workers ran trials); "
        f"unpinned — {s['hashed_by_driver']['wall_s']} s, downloaded {s['hashed_by_driver']['downloads']} "
        f"time(s) by the workers after the driver hashed it in {s['hashed_by_driver']['ranged_reads']} ranged reads "
        "(a download s3fs resumes with ranged requests counts once).",
        "- The machine was shared with other work (see the load), so the absolute times are loose; the "
        "plain copy and xrun's fetch alternate, so the ratio is the figure to read.",
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or add, before the hand-written analysis) this benchmark's section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# xrun benchmarks\n"
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    elif "## Analysis" in text:
        head, tail = text.split("## Analysis", 1)
        text = head + block + "\n## Analysis" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
