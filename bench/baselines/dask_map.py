"""Dispatch baseline: N no-op tasks with plain Dask (client.map + gather).

Usage: python bench/baselines/dask_map.py N
Timed as a whole process (imports and cluster start-up included), like xrun.
"""

import sys

from distributed import Client, LocalCluster


def noop(i):
    return {"x": i}


def main() -> None:
    n = int(sys.argv[1])
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        results = client.gather(client.map(noop, range(n)))
    assert len(results) == n, len(results)


if __name__ == "__main__":
    main()
