"""Content-addressed trial results shared across runs (DESIGN §4).

Layout under ``<cache>``::

    trials.sqlite              key -> the result of a trial (log inlined), in SQLite (WAL mode)
    trials/ab/abcdef….artifacts/   files the trial wrote, when it wrote any
    trials/ab/abcdef….json     results stored by earlier xrun releases (read, never written)

Only successful trials are cached. An entry is stored in one SQLite
transaction after its artifacts are in place, so a reader sees a whole entry
or none; a write transaction checks for a valid entry first, so of two runs
writing the same key at once the first valid result stays. The database is in
WAL mode with ``synchronous=NORMAL``: a killed process loses no committed
entry, and a run pays no ``fsync`` per trial (a batch of results is one
transaction, see :meth:`TrialCache.commit`). ``<cache>/runs/<spec name>.jsonl``
records what each run was made of, so ``xrun plan`` can say why a trial misses
(under a file lock, since runs may append at once). The database's tables of
the previous release (``entries``, ``imports``) are still read, after this
release's (see ``_SCHEMA``), and never written.

Entries are not trusted: anything that is not a well-formed entry for its key
(truncated, garbage, too large; for a legacy file also a directory, a link,
a FIFO) is a miss, and the next result for that key replaces it. A database
file that is not a database (or not a regular file) is moved aside and a new
one started. A cache that cannot be written (read-only, disk full) never fails
a run: the run warns once and goes on without caching, its results are in the
bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner import config
from runner._json import loads
from runner._safeio import read_bytes

log = logging.getLogger(__name__)

MAX_ENTRY_BYTES = 64 * 1024 * 1024  # a trial's log is capped at 5 MiB; the rest is small


DB_NAME = "trials.sqlite"
BUSY_TIMEOUT_MS = 60_000  # another run holding the write lock (one transaction per batch)
_SCHEMA = (
    # Results, one row each, appended in the order stored (a rowid table: each page of bodies is
    # written about once, and length() of a body is read from its header, never the body), found through a small index on `k`, the key's first 64 bits (_k).
    # A key's full text is compared on reading (a `k` may repeat in a cache made by someone else).
    # A TEXT PRIMARY KEY's index of 64-hex keys is many times larger: a batch of random keys
    # dirtied most of its pages, and a commit wrote them all to the WAL again.
    "CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, key TEXT NOT NULL, "
    "body BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS results_k ON results (k)",
    # environment: current (runner.env.imported): what each stored result imported, one row per
    # result, found by `s`, its scope key's first 64 bits; the imported sets themselves once each
    # (most trials share one)
    "CREATE TABLE IF NOT EXISTS scope_imports (id INTEGER PRIMARY KEY, s INTEGER NOT NULL, scope TEXT NOT NULL, "
    "key TEXT NOT NULL, imported TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS scope_imports_s ON scope_imports (s)",
    "CREATE TABLE IF NOT EXISTS import_sets (digest TEXT PRIMARY KEY, body BLOB NOT NULL)",
    # The tables of the previous release (its caches, and a run of it sharing this cache, write
    # them): read after the ones above, never written.
    "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS imports (scope TEXT NOT NULL, key TEXT NOT NULL, "
    "imported TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID",
)

_SQLITE_FULL, _SQLITE_READONLY = 13, 8  # primary result codes (sqlite3.h)
# An oversized or non-blob body is not read into memory: it comes back as NULL (a miss).
_BODY = "CASE WHEN typeof(body) = 'blob' AND length(body) <= ? THEN body END"
_CHUNK = 500  # keys per query (SQLite allows 32,766 parameters)
CACHE_KIB = 32 * 1024  # SQLite's page cache for the connection
CHECKPOINT_PAGES = 10_000  # WAL pages (of 4 KiB) before a checkpoint copies them to the database (SQLite: 1,000)


class TrialCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else config.cache_dir()
        self.trials = self.root / "trials"
        self.runs = self.root / "runs"
        self.db_path = self.root / DB_NAME
        self.unwritable: str | None = None  # why writes stopped, after the first failure
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._lock = threading.RLock()  # one connection, shared by the driver's threads
        self._in_batch = 0  # nesting depth of batch(): puts are staged until it ends
        # Results and imported versions staged for the next commit (one transaction for all).
        self._staged: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []
        self._staged_imports: list[tuple[str, str, dict[str, str]]] = []
        # Entries of earlier releases (files under trials/) are looked for only
        # where there may be some: not in a new cache (this release makes
        # trials/ only for artifacts).
        self._legacy = self.trials.is_dir()
        self._import_sets: dict[str, str] = {}  # imported-versions JSON -> digest, stored by this process
        self._last_imported: tuple[dict[str, str], str] | None = None  # the last set stored, and its digest
        self._artifacts_root = True  # in a commit: whether trials/ existed when its transaction began

    # ------------------------------------------------------------- the database

    def _db(self, *, create: bool) -> sqlite3.Connection | None:
        """The connection (opened once per process); None when there is no
        database yet and ``create`` is false. Raises sqlite3.Error / OSError."""
        if self._conn is not None and self._conn_pid == os.getpid():
            return self._conn
        self._conn = None  # a forked child never shares its parent's connection
        try:
            mode = os.lstat(self.db_path).st_mode
        except FileNotFoundError:
            if not create:
                return None
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            if not stat.S_ISREG(mode):  # a link, FIFO, directory: not ours to open
                if not create:
                    return None
                self._set_aside(f"not a regular file ({stat.filemode(mode)})")
        conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if create or conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against a killed process
            # A batch's random keys touch pages all over the key indexes: keep them in memory
            # between transactions rather than reading them back (memory grows only as used).
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            # Fewer, larger checkpoints (each one fsyncs twice); the WAL file is cut back after one.
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={CHECKPOINT_PAGES * 4096}")
            for ddl in _SCHEMA:
                conn.execute(ddl)
        except BaseException:
            conn.close()
            raise
        self._conn, self._conn_pid = conn, os.getpid()
        return conn

    def _set_aside(self, why: str) -> None:
        """Move a database that cannot be one out of the way (kept, for a look),
        under a lock so that concurrent runs do it once."""
        from filelock import FileLock  # deferred: only when the cache is written

        with FileLock(str(self.db_path) + ".lock", timeout=60):
            try:
                mode = os.lstat(self.db_path).st_mode
            except FileNotFoundError:
                return
            if stat.S_ISREG(mode) and _healthy(self.db_path):
                return  # another run set it aside and started a new one meanwhile
            aside = self.db_path.with_name(f"{DB_NAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
            os.rename(self.db_path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.db_path}{suffix}")
            log.warning("the trial cache database %s %s; moved it to %s and started a new one",
                        self.db_path, why, aside.name)  # fmt: skip

    def close(self) -> None:
        with self._lock:
            self._import_sets.clear()  # a database set aside takes its import sets along
            self._last_imported = None
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
            self._conn = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Store every :meth:`put` inside in one transaction when the block ends
        (one commit for a batch of results instead of one per trial)."""
        with self._lock:
            self._in_batch += 1
            try:
                yield
            finally:
                self._in_batch -= 1
                if self._in_batch == 0:
                    self.commit()

    # ------------------------------------------------------------- results

    def _path(self, key: str) -> Path:
        """Where an earlier release stored the entry of ``key`` (read only)."""
        return self.trials / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The entry for ``key``, or None for a miss (absent, or anything but a valid entry)."""
        return self.get_many([key]).get(key)

    def holds_nothing(self) -> bool:
        """Whether looking trials up here can find nothing: no result and no
        imported-versions row in the database (or no database), and no files of
        an earlier release. A first run's plan then keys no trial to look it up."""
        if self._legacy or (self.root / "imports").is_dir():
            return False
        with self._lock:
            try:
                conn = self._db(create=False)
                if conn is None:
                    return True
                return not conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM results) OR EXISTS (SELECT 1 FROM entries) "
                    "OR EXISTS (SELECT 1 FROM scope_imports) OR EXISTS (SELECT 1 FROM imports)").fetchone()[0]  # fmt: skip
            except (OSError, sqlite3.Error):  # unreadable: looked up trial by trial (misses) as before
                return False

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """``get`` of each of ``keys`` (the hits), a few hundred keys per query."""
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            with self._lock:
                try:
                    conn = self._db(create=False)
                    if conn is not None:
                        self._read_entries(conn, chunk, out)
                except (OSError, sqlite3.Error):  # not a database, unreadable: misses
                    pass
        if self._legacy:
            for key in keys:
                if key not in out:
                    entry = _decode(_read_regular(self._path(key)), key)
                    if entry is not None:
                        out[key] = entry
        return out

    @staticmethod
    def _read_entries(conn: sqlite3.Connection, keys: list[str], out: dict[str, dict[str, Any]]) -> None:
        """Put in ``out`` the valid entry of each of ``keys`` (at most _CHUNK) that
        has one in the database: the first found in ``results``, else the
        previous release's ``entries``. Rows are read one at a time."""
        want = set(keys)
        marks = ",".join("?" * len(keys))
        rows = conn.execute(f"SELECT key, {_BODY} FROM results WHERE k IN ({marks}) AND key IN ({marks})",
                            (MAX_ENTRY_BYTES, *map(_k, keys), *keys))  # fmt: skip
        for key, body in rows:
            if key in want and key not in out:
                entry = _decode(body, key)
                if entry is not None:
                    out[key] = entry
        rest = [k for k in keys if k not in out]
        if rest:
            rows = conn.execute(f"SELECT key, {_BODY} FROM entries WHERE key IN ({','.join('?' * len(rest))})",
                                (MAX_ENTRY_BYTES, *rest))  # fmt: skip
            for key, body in rows:
                if key in want and key not in out:
                    entry = _decode(body, key)
                    if entry is not None:
                        out[key] = entry

    def scopes_with_imports(self, scopes: list[str]) -> set[str]:
        """Which of ``scopes`` have imported versions recorded in the database."""
        out: set[str] = set()
        for i in range(0, len(scopes), _CHUNK):
            chunk = scopes[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                try:
                    conn = self._db(create=False)
                    if conn is None:
                        continue
                    rows = conn.execute(f"SELECT DISTINCT scope FROM scope_imports WHERE s IN ({marks}) AND scope IN ({marks})",
                                        (*map(_k, chunk), *chunk)).fetchall()  # fmt: skip
                    out.update(r[0] for r in rows if isinstance(r[0], str))
                    rest = [s for s in chunk if s not in out]
                    if rest:
                        rows = conn.execute(f"SELECT DISTINCT scope FROM imports WHERE scope IN ({','.join('?' * len(rest))})",
                                            rest).fetchall()  # fmt: skip
                        out.update(r[0] for r in rows if isinstance(r[0], str))
                except (OSError, sqlite3.Error):
                    pass
        return out

    def contains(self, key: str) -> bool:
        return self.get(key) is not None

    def artifacts_dir(self, key: str) -> Path:
        return self.trials / key[:2] / f"{key}.artifacts"

    def holds_artifacts(self) -> bool:
        """Whether any entry may have artifacts: they live under ``trials/``,
        made with the first (and kept). Without it, no entry stored before
        this call has any."""
        return os.path.lexists(self.trials)

    def put(self, entry: dict[str, Any], artifacts: list[tuple[str, bytes]] = (), body: bytes | None = None) -> None:  # type: ignore[assignment]
        """Store a successful trial (artifacts first, then the entry; ``body``:
        the entry's JSON when the caller has it already). Inside :meth:`batch`
        it is stored when the batch ends.

        Never raises for the cache's own storage: a read-only or full cache
        turns caching off for this run, with one warning."""
        if body is None:
            body = json.dumps(entry, separators=(",", ":")).encode()
        self.stage(entry["key"], body, artifacts)
        if self._in_batch == 0:
            self.commit()

    def stage(self, key: str, body: bytes, artifacts: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
        """Keep the entry ``body`` (its JSON) of ``key`` and its artifacts for the
        next :meth:`commit`; nothing is written until then."""
        if self.unwritable is None:
            with self._lock:
                self._staged.append((key, body, list(artifacts)))

    def commit(self) -> None:
        """Store every staged result and imported-versions row in one transaction:
        a result whose key has a valid entry already is dropped (the first valid
        result stays), the others' artifacts are put in place, then the rows are
        written, and only then committed. Never raises for the cache's own
        storage (see :meth:`put`); interrupted (Ctrl-C), it stores nothing and
        keeps what is staged for the next call."""
        with self._lock:
            if not self._staged and not self._staged_imports:
                return
            if self.unwritable is None:
                try:
                    self._commit()
                except (OSError, sqlite3.Error) as exc:
                    self._retry_or_give_up(exc)
            self._staged, self._staged_imports = [], []

    def _retry_or_give_up(self, exc: OSError | sqlite3.Error) -> None:
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            # "file is not a database", "malformed": start a new one, try once more
            try:
                self.close()
                self._set_aside(str(exc))
                self._commit()
                return
            except (OSError, sqlite3.Error) as again:
                exc = again
        self._give_up(exc)

    def _commit(self) -> None:
        conn = self._db(create=True)
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")  # writers one at a time: check, then store
        try:
            # Artifacts are written under the write lock only: without trials/
            # now, no leftover of a killed writer can be at any key's place.
            self._artifacts_root = os.path.lexists(self.trials)
            ks = {key: _k(key) for key, _, _ in self._staged}
            stored, corrupt = self._valid_keys(conn, list(ks), ks)
            done = set(stored)
            rows: list[tuple[int, str, bytes]] = []
            for key, body, artifacts in self._staged:
                if key in done:
                    continue
                done.add(key)  # of two results for one key, the first stays
                # Under the write lock with no valid entry: files already at the
                # artifacts place belong to no stored result (a corrupt entry, or a
                # writer killed before its transaction committed).
                if artifacts or self._artifacts_root:  # else nothing to put or replace (see _store_artifacts)
                    self._store_artifacts(key, artifacts)
                rows.append((ks[key], key, body))
            if corrupt:  # rows of these keys that are not entries: replaced by the new ones
                conn.executemany("DELETE FROM results WHERE k = ? AND key = ?", [(ks[k], k) for k in corrupt])
            conn.executemany("INSERT INTO results (k, key, body) VALUES (?, ?, ?)", rows)
            if self._staged_imports:
                self._insert_imports(conn, stored, done)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._import_sets.clear()  # sets first stored by this transaction are not stored
            self._last_imported = None
            raise

    def _valid_keys(self, conn: sqlite3.Connection, keys: list[str], ks: dict[str, int]) -> tuple[set[str], set[str]]:
        """Which of ``keys`` have a valid entry (in the database, or a file of an
        earlier release), and which have rows in ``results`` but none valid
        (``ks``: each key's _k). Only the keys' index is searched; a body is
        read only where a row is found."""
        valid: set[str] = set()
        found: set[str] = set()
        # The previous release's table, empty in a cache it never wrote (in the
        # write transaction: no other writer fills it meanwhile).
        old_rows = conn.execute("SELECT EXISTS (SELECT 1 FROM entries)").fetchone()[0]
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            want = set(chunk)
            rows = conn.execute(f"SELECT id, key FROM results WHERE k IN ({marks}) AND key IN ({marks})",
                                (*[ks[k] for k in chunk], *chunk))  # fmt: skip
            for rowid, key in rows:
                if key in want and key not in valid:
                    found.add(key)
                    body = conn.execute(f"SELECT {_BODY} FROM results WHERE id = ?", (MAX_ENTRY_BYTES, rowid)).fetchone()
                    if body is not None and _decode(body[0], key) is not None:
                        valid.add(key)
            rest = [k for k in chunk if k not in valid] if old_rows else []
            if rest:
                old = conn.execute(f"SELECT key FROM entries WHERE key IN ({','.join('?' * len(rest))})", rest).fetchall()
                for (key,) in old:
                    if key in want and key not in valid:
                        body = conn.execute(f"SELECT {_BODY} FROM entries WHERE key = ?", (MAX_ENTRY_BYTES, key)).fetchone()
                        if body is not None and _decode(body[0], key) is not None:
                            valid.add(key)
        if self._legacy:
            valid.update(k for k in keys if k not in valid and _decode(_read_regular(self._path(k)), k) is not None)
        return valid, found - valid

    def _store_artifacts(self, key: str, artifacts: list[tuple[str, bytes]]) -> None:
        """Put ``artifacts`` at the key's place, replacing whatever is there
        (under the write lock: no other writer makes or removes artifacts meanwhile)."""
        if not artifacts and not self._artifacts_root:
            return  # no trials/ when the transaction began: nothing to replace (one stat per commit, not per trial)
        final = self.artifacts_dir(key)
        if not artifacts and not os.path.lexists(final):
            return
        self._artifacts_root = True
        tmp = None
        if artifacts:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key[:12]}-"))
            for rel, data in artifacts:
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        if os.path.lexists(final):
            old = final.with_name(f".{key[:12]}-old-{os.getpid()}-{threading.get_ident()}")
            os.rename(final, old)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        if tmp is not None:
            os.rename(tmp, final)

    def _give_up(self, exc: BaseException) -> None:
        if isinstance(exc, OSError):
            self.unwritable = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        else:  # SQLite's own words, with the OS's for the common cases
            code = getattr(exc, "sqlite_errorcode", None) or 0
            said = {_SQLITE_FULL: "No space left on device", _SQLITE_READONLY: "Read-only file system"}
            self.unwritable = f"{said[code & 0xFF] + ' (' + str(exc) + ')' if code & 0xFF in said else exc}: {self.db_path}"
        log.warning(
            "cannot write to the trial cache %s (%s); this run goes on without caching, "
            "its results are in the bundle",
            self.root, self.unwritable,
        )  # fmt: skip

    # ------------------------------------------------------------- imports (environment: current)

    def remember_imports(self, scope: str, key: str, imported: dict[str, str]) -> None:
        """Record what the result stored under ``key`` imported, with the
        results of the next :meth:`commit` (now, outside :meth:`batch`)."""
        self.stage_imports(scope, key, imported)
        if self._in_batch == 0:
            self.commit()

    def stage_imports(self, scope: str, key: str, imported: dict[str, str]) -> None:
        """Keep an imported-versions row for the next :meth:`commit`."""
        if self.unwritable is None:
            with self._lock:
                self._staged_imports.append((scope, key, imported))

    def _insert_imports(self, conn: sqlite3.Connection, stored: set[str], done: set[str]) -> None:
        """The staged imported-versions rows; each distinct set stored once.
        ``stored``: keys whose result was stored before this commit (their rows
        were written with them); ``done``: ``stored`` and the keys stored now."""
        rows: list[tuple[int, str, str, str, float]] = []
        now = time.time()
        last_seen: Any = None
        digest = ""
        seen: set[tuple[str, str]] = set()
        s_of: dict[str, int] = {}  # _k of each scope (a run's trials share a few)
        for scope, key, imported in self._staged_imports:
            if key in stored or (scope, key) in seen:
                continue
            seen.add((scope, key))
            s = s_of.get(scope)
            if s is None:
                s = s_of[scope] = _k(scope)
            if key not in done and conn.execute(  # a row without a result of this commit: kept once
                "SELECT 1 FROM scope_imports WHERE s = ? AND scope = ? AND key = ? "
                "UNION ALL SELECT 1 FROM imports WHERE scope = ? AND key = ? LIMIT 1",
                (s, scope, key, scope, key)).fetchone():  # fmt: skip
                continue
            if imported is not last_seen:  # most results of a run share one set (often one object)
                last_seen, digest = imported, self._import_digest(conn, imported)
            rows.append((s, scope, key, digest, now))
        conn.executemany("INSERT INTO scope_imports (s, scope, key, imported, at) VALUES (?, ?, ?, ?, ?)", rows)

    def _import_digest(self, conn: sqlite3.Connection, imported: dict[str, str]) -> str:
        last = self._last_imported
        if last is not None and imported == last[0]:
            return last[1]  # most trials of a run imported the same versions: not encoded again
        body = json.dumps(imported, sort_keys=True, separators=(",", ":"))
        digest = self._import_sets.get(body)
        if digest is None:
            digest = hashlib.sha256(body.encode()).hexdigest()
            conn.execute("INSERT OR IGNORE INTO import_sets (digest, body) VALUES (?, ?)", (digest, body.encode()))
            if len(self._import_sets) < 64:
                self._import_sets[body] = digest
        self._last_imported = (dict(imported), digest)
        return digest

    def imports_under(self, scope: str, limit: int, max_bytes: int) -> list[tuple[str, float, bytes]]:
        """(trial key, when, imported JSON) stored under ``scope``, newest first;
        bodies over ``max_bytes`` are left out unread."""
        with self._lock:
            try:
                conn = self._db(create=False)
                if conn is None:
                    return []
                rows = conn.execute(
                    "SELECT i.key, i.at, CASE WHEN typeof(s.body) = 'blob' AND length(s.body) <= ? THEN s.body END "
                    "FROM (SELECT key, at, imported FROM scope_imports WHERE s = ? AND scope = ? "
                    "UNION ALL SELECT key, at, imported FROM imports WHERE scope = ?) i "
                    "JOIN import_sets s ON s.digest = i.imported ORDER BY i.at DESC LIMIT ?",
                    (max_bytes, _k(scope), scope, scope, limit)).fetchall()  # fmt: skip
            except (OSError, sqlite3.Error):
                return []
        return [(k, at, body) for k, at, body in rows
                if isinstance(k, str) and isinstance(at, (int, float)) and isinstance(body, bytes)]  # fmt: skip

    # ------------------------------------------------------------- runs index

    def _index(self, name: str) -> Path:
        return self.runs / f"{name}.jsonl"

    def record_run(self, name: str, record: dict[str, Any]) -> None:
        from filelock import FileLock  # deferred: only when the cache is written

        if self.unwritable is not None:
            return
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        try:
            self.runs.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self._index(name)) + ".lock", timeout=60):
                with open(self._index(name), "a", encoding="utf-8") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:  # filelock's Timeout is an OSError too
            self._give_up(exc)

    def run_records(self, name: str) -> Iterator[dict[str, Any]]:
        """Records of earlier runs of a spec name, newest first; torn lines skipped."""
        try:
            lines = self._index(name).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for line in reversed(lines):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def _k(key: str) -> int:
    """What ``results`` and ``scope_imports`` index a key by: its first 64 bits
    (keys are SHA-256 hex), as a signed integer; any other string's SHA-256's."""
    try:
        v = int(key[:16], 16)
    except ValueError:
        v = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    return v - _WRAP if v > _INT64_MAX else v


_INT64_MAX, _WRAP = (1 << 63) - 1, 1 << 64


def _decode(data: Any, key: str) -> dict[str, Any] | None:
    """The entry in ``data`` (bytes of JSON) if it is a valid one for ``key``."""
    if not isinstance(data, (bytes, str)) or len(data) > MAX_ENTRY_BYTES:
        return None
    try:
        entry = loads(data)
    except (ValueError, RecursionError):  # garbage, truncated, or not UTF-8
        return None
    return entry if valid_entry(entry, key) else None


def _healthy(path: Path) -> bool:
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file of at most MAX_ENTRY_BYTES, without following
    a link; None for anything else (absent, a directory, a FIFO, a device, too large)."""
    try:
        return read_bytes(path, MAX_ENTRY_BYTES)
    except OSError:  # UnsafePath is one
        return None


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))


def valid_entry(entry: Any, key: str) -> bool:
    """Whether ``entry`` is a well-formed successful result stored for ``key``:
    what the executor and the bundle writer read from it has the right shape."""
    # `pruned`: stopped by an adaptive sweep's early stopping, at thresholds that are part of the key
    if not isinstance(entry, dict) or entry.get("key") != key or entry.get("status") not in ("ok", "pruned"):
        return False
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in metrics.items()):
        return False
    if not isinstance(entry.get("id"), str) or not isinstance(entry.get("params", {}), dict):
        return False
    if not isinstance(entry.get("log", ""), str) or not isinstance(entry.get("history", []), list):
        return False
    if not all(_is_number(entry.get(k)) for k in ("start", "end")):
        return False
    if not all(isinstance(entry.get(k), (str, type(None))) for k in ("error", "traceback", "worker", "run_id")):
        return False
    attempts = entry.get("attempts", 1)
    return isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1
