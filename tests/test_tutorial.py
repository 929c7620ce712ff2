"""docs/tutorial.md, walked end to end: every command of its ```bash blocks is
run as written, in order, in a copy of the project (as a clone would be), and
the specs it builds up from its ```yaml blocks are written where it says.

Only these are not run, each for a stated reason (the test fails if the
tutorial gains a command this walker does not know what to do with):

- the installation block (this interpreter already has xrun installed);
- `xrun build … --push` (no registry can be reached here);
- `xrun run` on the Kubernetes backend is run, but with every trial cached,
  so it needs no cluster (which is what the tutorial's text promises).

Placeholders (`runs/quickstart-…`, `runs/my-sweep-…`, `runs/my-sweep-A/B`) are
the bundles earlier steps printed. Docker steps run where a Docker daemon
runs (required with CI=true); builds there take the local base image through
`--build-arg BASE_IMAGE=…`, the way the tutorial says to build on another base.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "docs" / "tutorial.md"
LOCAL_BASE = "xrun-base:bookworm"

NOT_RUN = {
    "python -m venv .venv && . .venv/bin/activate": "this interpreter already has xrun",
    'pip install -e ".[all]"': "this interpreter already has xrun",
    "xrun build specs/my-sweep.yaml --push": "no registry can be reached here",
}


def sections(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(heading, [(language, code)]) for each `## ` section, in order."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    for part in re.split(r"^## ", text, flags=re.M):
        heading = part.splitlines()[0] if part.strip() else ""
        blocks = re.findall(r"^```(\w+)\n(.*?)^```", part, flags=re.M | re.S)
        out.append((heading, blocks))
    return out


def commands(code: str) -> list[str]:
    """The commands of a bash block, without their trailing comments."""
    out = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(line.split("  #")[0].strip() if "  #" in line else line.strip())
    return out


def docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        if os.environ.get("CI") == "true":
            pytest.fail("Docker must run in CI (bash .ci/docker-setup.sh): the tutorial's Docker steps are required")
        return False
    return True


class Walker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bundles: dict[str, list[Path]] = {}
        self.log: list[str] = []

    def run(self, command: str, *, expect: int = 0, extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        words = shlex.split(command, comments=True)
        assert words[0] == "xrun", command
        argv = [sys.executable, "-m", "runner.cli", *(self.place(w) for w in words[1:]), *(extra or [])]
        proc = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "COLUMNS": "120"})  # fmt: skip
        self.log.append(f"$ {command}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        assert proc.returncode == expect, f"{command}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        path = self.root / last if last and not last.startswith("/") else Path(last or "/nonexistent")
        runs = words[1] == "run" or words[1].endswith((".yaml", ".yml"))  # not reproduce's own bundles
        if runs and (path / "bundle.json").is_file():
            name = json.loads((path / "bundle.json").read_text())["spec_name"]
            self.bundles.setdefault(name, []).append(path)
        return proc

    def place(self, word: str) -> str:
        """A tutorial placeholder → the bundle an earlier step printed."""
        m = re.fullmatch(r"runs/([a-z0-9-]+?)-(…|A|B)", word)
        if not m:
            return word
        name, which = m.groups()
        found = self.bundles.get(name)
        assert found, f"{word}: no {name} bundle yet"
        if which == "A":
            return str(found[0])
        if which == "B":
            return str(found[-1])
        return str(self.chosen.get(name, found[-1]))

    chosen: dict[str, Path] = {}


def merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


@pytest.mark.docker
def test_tutorial_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("specs", "envs", "experiments"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "Dockerfile.base", root / "Dockerfile.base")
    (root / "pyproject.toml").write_text("[project]\nname = 'tutorial'\nversion = '0'\n")
    text = TUTORIAL.read_text()
    assert "--build-arg BASE_IMAGE=" in text  # the tutorial says how to build on another base
    docker = docker_available()
    w = Walker(root)
    spec_path = root / "specs" / "my-sweep.yaml"
    ran: list[str] = []

    for heading, blocks in sections(text):
        step = heading.split(".")[0] if heading[:1].isdigit() else ""
        if step in ("3", "4") and not docker:
            continue  # Docker steps only where Docker runs (never skipped with CI=true)
        for lang, code in blocks:
            if lang == "yaml":
                data = yaml.safe_load(code)
                if step == "2" and data.get("name") == "my-sweep":
                    spec_path.write_text(code)  # "Here is the quickstart again as specs/my-sweep.yaml"
                elif step in ("3", "4") and set(data) <= {"image", "cluster"}:
                    spec = yaml.safe_load(spec_path.read_text())
                    for key in data:  # "the rest of this tutorial changes only its image and cluster"
                        spec[key] = data[key]
                    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
                continue
            if lang != "bash":
                continue
            for command in commands(code):
                if command in NOT_RUN:
                    continue
                assert command.startswith("xrun "), f"the walker does not know how to run: {command!r}"
                extra: list[str] = []
                if step == "3" and command.split()[1] in ("build", "run"):
                    extra = ["--build-arg", f"BASE_IMAGE={LOCAL_BASE}"] if "--build-arg" not in command else []
                if step == "5" and command.startswith("xrun reproduce"):  # the recorded backend is docker
                    extra = ["--build-arg", f"BASE_IMAGE={LOCAL_BASE}"]
                if step == "5" and command.startswith("xrun reproduce run.tar.gz"):
                    # "or `xrun pack BUNDLE -o run.tar.gz`": the archive the next command reads
                    w.run(f"xrun pack {w.place('runs/my-sweep-…')} -o run.tar.gz")
                proc = w.run(command, extra=extra)
                ran.append(command)
                check_claims(w, step, command, proc)
        if step == "1":
            # "Run the same command again: every trial is already in the trial cache, so nothing runs."
            again = w.run("xrun specs/quickstart.yaml")
            meta = json.loads((w.bundles["quickstart"][-1] / "bundle.json").read_text())
            assert meta["counts"]["cached"] == meta["counts"]["total"] and "no cluster started" in again.stderr
        if step == "3":
            w.chosen["my-sweep"] = next(b for b in w.bundles["my-sweep"]
                                        if json.loads((b / "bundle.json").read_text())["counts"].get("ok"))  # fmt: skip

    expected = {"xrun validate specs/quickstart.yaml", "xrun specs/quickstart.yaml", "xrun lock specs/my-sweep.yaml"}
    if docker:
        expected |= {"xrun run specs/my-sweep.yaml", "xrun diff runs/my-sweep-A runs/my-sweep-B"}
    assert expected <= set(ran), sorted(expected - set(ran))


def check_claims(w: Walker, step: str, command: str, proc: subprocess.CompletedProcess[str]) -> None:
    """What the tutorial says each command does, checked where it is cheap to."""
    if command == "xrun specs/quickstart.yaml":
        assert "best:" in proc.stderr and "trials (best accuracy first)" in proc.stderr
        bundle = w.bundles["quickstart"][-1]
        assert (bundle / "report.html").is_file() and (bundle / "MANIFEST.sha256").is_file()
    elif command.startswith("xrun plan specs/quickstart.yaml --set"):
        assert "8: 6 cached, 2 to run" in proc.stdout  # only the new points of the widened grid
    elif command.startswith("xrun specs/quickstart.yaml --set"):
        meta = json.loads((w.bundles["quickstart"][-1] / "bundle.json").read_text())
        assert meta["counts"]["cached"] == 6 and meta["counts"]["ok"] == 2
    elif command.startswith("xrun ls runs"):
        assert all(b.name in proc.stdout for bs in w.bundles.values() for b in bs)
    elif command == "xrun lock specs/my-sweep.yaml --check":
        assert "is up to date" in proc.stderr
    elif command == "xrun lock specs/my-sweep.yaml":
        # A relock of the committed lock keeps its pins: the file does not change.
        assert (w.root / "envs" / "sklearn-pip.lock").read_bytes() == (REPO / "envs" / "sklearn-pip.lock").read_bytes()
    elif command.startswith("xrun env create"):
        python = Path(proc.stdout.strip().splitlines()[-1])
        version = subprocess.run([python, "-c", "import sklearn; print(sklearn.__version__)"],
                                 capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        assert version == "1.5.2"
    elif command == "xrun build specs/my-sweep.yaml --json":
        info = json.loads(proc.stdout)
        assert info["env_layer_digest"].startswith("sha256:")
    elif command.startswith("xrun run specs/my-sweep.yaml") and step == "3":
        meta = json.loads((w.bundles["my-sweep"][-1] / "bundle.json").read_text())
        assert meta["backend"] == "docker" and meta["status"] == "ok"
    elif command.startswith("xrun manifests"):
        assert {p.suffix for p in (w.root / "k8s").iterdir()} == {".yaml"}
    elif command.startswith("xrun run specs/my-sweep.yaml") and step == "4":
        meta = json.loads((w.bundles["my-sweep"][-1] / "bundle.json").read_text())
        assert meta["backend"] == "kubernetes" and meta["cluster_started"] is False
    elif command.startswith("xrun reproduce"):
        assert "verdict: match" in proc.stderr
    elif command == "xrun specs/pipeline.yaml":
        final = json.loads((w.bundles["pipeline"][-1] / "final.json").read_text())
        assert final["status"] == "ok" and final["metrics"]["test_accuracy"] > 0.9 and "model.skops" in final["files"]
        assert "final: ran" in proc.stderr
    elif command == "xrun plan specs/pipeline.yaml":
        assert "prepare      cached" in proc.stdout and "final        cached" in proc.stdout
    elif command.startswith("xrun run specs/quickstart.yaml --set trial.sklearn.holdout"):
        final = json.loads((w.bundles["quickstart"][-1] / "final.json").read_text())
        assert final["holdout"]["n_holdout"] == 30 and final["model"]["sha256"] == final["files"]["model.skops"]
    elif command.startswith("xrun diff"):
        assert "backend: docker → kubernetes" in proc.stdout
