"""The straggler benchmark's trial: heterogeneous durations, half sleep, half CPU.

Durations follow a log-normal spread clipped to [10 ms, 5 s] (median 0.1 s),
drawn once from a fixed seed, with one 5 s and one 10 ms trial at seeded
places. ``DURATIONS[i]`` is trial ``i``'s nominal work; the total is known.
"""

import math
import random
import time

N = 300


def durations(n: int = N, seed: int = 17) -> list[float]:
    rng = random.Random(seed)
    ds = [min(5.0, max(0.01, math.exp(rng.gauss(math.log(0.1), 1.2)))) for _ in range(n)]
    ds[rng.randrange(n)] = 5.0
    ds[rng.randrange(n)] = 0.01
    return ds


DURATIONS = durations()


def work(params, ctx):
    d = DURATIONS[params["i"]]
    time.sleep(d / 2)
    end = time.perf_counter() + d / 2
    x = 0
    while time.perf_counter() < end:  # CPU half: the thread keeps the core busy
        x += 1
    return {"d": d}
