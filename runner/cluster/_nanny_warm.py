"""Imported by each local worker's nanny (Dask ``--preload-nanny``, by file
path: the nanny may run an environment's interpreter, where xrun is not
installed), before it connects to the scheduler and forks its worker process.

It imports the modules named in ``XRUN_NANNY_IMPORTS`` (comma-separated), so
the forked worker has them already: the built-in scikit-learn trial's
estimator, dataset loader and ``sklearn.model_selection``, while the scheduler
is still starting. Only modules of packages installed in this interpreter's
site-packages are imported, never a module found elsewhere on ``sys.path``
(the working directory, the user's code): the worker imports those from the
run's code snapshot, which a module already loaded here would shadow. Standard
library only; a module that fails to import is left to the trial to report.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sysconfig

VAR = "XRUN_NANNY_IMPORTS"


def _installed(top: str) -> bool:
    """The top-level package ``top`` is found in this interpreter's site-packages."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [spec.origin] if spec.origin else list(spec.submodule_search_locations or ())
    paths = sysconfig.get_paths()
    roots = {os.path.realpath(paths[k]) + os.sep for k in ("purelib", "platlib") if paths.get(k)}
    return bool(places) and all(
        isinstance(p, str) and any(os.path.realpath(p).startswith(r) for r in roots) for p in places
    )


def warm(names: str) -> list[str]:
    """Import each of the comma-separated ``names`` whose package is installed;
    returns those imported."""
    done = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        if not _installed(name.partition(".")[0]):
            continue
        try:
            importlib.import_module(name)
        except Exception:  # the trial imports it again and reports the problem
            continue
        done.append(name)
    return done


warmed = warm(os.environ.get(VAR, ""))
