"""Fill a trial cache with the code of main 729dbf2 (PYTHONPATH=its tree)."""
import json
import sqlite3
import sys
from pathlib import Path

import runner.cache as rc
from runner.cache import TrialCache

assert "entries (key TEXT PRIMARY KEY" in rc._SCHEMA[0], "not the previous release's code"

root = Path(sys.argv[1])
def entry(key, score):
    return {"id": f"t{int(key[:2], 16):05d}", "key": key, "params": {"a": score}, "seed": 7, "status": "ok",
            "metrics": {"score": score}, "error": None, "traceback": None, "failure_class": None, "attempts": 1,
            "history": [], "log": f"log of {key[:4]}", "run_id": "old-run"}
keys = [f"{i:02x}" + "0" * 62 for i in range(1, 6)]
scopes = ["e1" + "0" * 62, "e2" + "0" * 62]
cache = TrialCache(root)
with cache.batch():
    for i, key in enumerate(keys[:4]):
        cache.put(entry(key, float(i + 1)), [("out/model.txt", f"model {i + 1}".encode())] if i == 0 else [])
        cache.stage_imports(scopes[i % 2], key, {"numpy": "1.26.4", "xrun-old": "0.1.0"})
cache.close()
conn = sqlite3.connect(root / "trials.sqlite")  # keys[4]: a corrupt row, as a killed older writer could leave
conn.execute("INSERT INTO entries (key, body) VALUES (?, ?)", (keys[4], b'{"id": "t00005", "key": "05'))
conn.commit()
conn.close()
print(json.dumps({"keys": keys, "scopes": scopes}))
