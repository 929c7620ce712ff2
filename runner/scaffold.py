"""``xrun init``: a new project with a spec, an experiment and an environment file."""

from __future__ import annotations

import re
from pathlib import Path

from runner.errors import UsageError

SPEC = """\
# xrun spec v1 — run it with: xrun {name}.yaml
xrun: 1
name: {name}
description: a first sweep

environment:
  current: true            # or: pip: envs/{name}.in   (then: xrun lock {name}.yaml)

code:
  root: .
  include: ["experiments/**/*.py"]

trial:
  function: experiments.train:train
  timeout: 10m
  retries: 1

sweep:
  method: grid
  parameters:
    C: [0.1, 1, 10]
    kernel: [linear, rbf]
  seed: 0
  objective: {{metric: accuracy, goal: maximize}}

cluster:
  backend: local
  workers: 2

output: runs
"""

TRAIN = '''\
"""The trial: xrun calls train(params, ctx) once per point of the sweep."""

from __future__ import annotations


def train(params: dict, ctx) -> dict[str, float]:
    from sklearn.datasets import load_iris  # deferred: the trial environment's scikit-learn, only for such trials
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC

    X, y = load_iris(return_X_y=True)
    model = SVC(C=params["C"], kernel=params["kernel"], random_state=ctx.seed)
    scores = cross_val_score(model, X, y, cv=5)
    print(f"{ctx.trial_id}: {scores.mean():.4f}")
    return {"accuracy": float(scores.mean()), "accuracy_std": float(scores.std())}
'''

REQUIREMENTS = """\
# Requirements of the trials; lock with `xrun lock {name}.yaml` after switching
# the spec to `environment: {{pip: envs/{name}.in}}`.
scikit-learn
"""


def init(directory: Path, name: str) -> list[Path]:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise UsageError(f"--name {name!r}: use lowercase letters, digits and '-'")
    files = {
        directory / f"{name}.yaml": SPEC.format(name=name),
        directory / "experiments" / "__init__.py": "",
        directory / "experiments" / "train.py": TRAIN,
        directory / "envs" / f"{name}.in": REQUIREMENTS.format(name=name),
    }
    existing = [p for p in files if p.exists()]
    if existing:
        raise UsageError(f"{existing[0]} already exists; not overwriting anything")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)
