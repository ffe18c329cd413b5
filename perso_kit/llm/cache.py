"""The persistent answer cache, which is also the recording a class can replay.

Every successful answer is stored in a SQLite file under a key that hashes the *whole request*:
model, messages, tools, response format and parameters -- never the API key or any header. The
same request later is answered from the file: marked ``cached=True``, costing nothing. SQLite
lets several kernels share one file safely (each write is a transaction; readers wait for a
writer up to 30 s).

**Record and replay.** The cache file *is* the recording: a teacher runs the notebooks with a
real model and ``PERSO_KIT_LLM_CACHE=class.sqlite``, then hands out ``class.sqlite``; students set
``PERSO_KIT_LLM_BACKEND=replay`` and ``PERSO_KIT_LLM_REPLAY=class.sqlite`` and get the same
answers with no key (:class:`ResponseCache` opened ``readonly``).

A damaged file is reported and moved aside (``<name>.damaged-<time>``), and a fresh one started;
if the disk fails mid-session the cache turns itself off with a warning. It never crashes a call.

>>> import tempfile, os
>>> c = ResponseCache(os.path.join(tempfile.mkdtemp(), "c.sqlite"))
>>> k = request_key({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
>>> c.put(k, {"text": "hello"}, model="m", backend="offline"); c.get(k)["text"]
'hello'
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import threading
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger("perso_kit.llm")

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, model TEXT, backend TEXT, request TEXT, response TEXT,
    cost_usd REAL, created REAL);
CREATE TABLE IF NOT EXISTS embeddings (
    key TEXT PRIMARY KEY, model TEXT, dim INTEGER, vector BLOB, created REAL);
"""


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def request_key(payload: dict, **extra) -> str:
    """The cache key of a request: SHA-256 of its canonical JSON (plus ``extra`` fields such as
    a sample number). ``payload`` is the request body only; no header or key ever enters."""
    body = canonical_json({"request": payload, **extra}) if extra else canonical_json(payload)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class ResponseCache:
    """A SQLite file of answers (and embeddings) keyed by request; see the module docstring.

    Parameters
    ----------
    path : str or Path
        The file; created if missing (unless ``readonly``).
    readonly : bool
        Open an existing recording for replay: lookups only, nothing is written.
    """

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path).expanduser()
        self.readonly = readonly
        self.notices: list[str] = []
        self.broken: str | None = None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._open()

    # ----------------------------------------------------------------------------- opening
    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            if not self.path.exists():
                raise FileNotFoundError(self.path)
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30,
                                   check_same_thread=False)
            conn.execute("SELECT count(*) FROM answers").fetchone()
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        conn.execute("SELECT count(*) FROM answers").fetchone()
        return conn

    def _open(self) -> None:
        try:
            self._conn = self._connect()
            return
        except FileNotFoundError:
            self._fail(f"recorded file {self.path} does not exist")
            return
        except sqlite3.DatabaseError as e:
            reason = str(e)
        if self.readonly:
            self._fail(f"recorded file {self.path} is damaged ({reason}); ask for a fresh copy")
            return
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            shutil.move(str(self.path), str(aside))
            for suffix in ("-wal", "-shm"):
                extra = Path(str(self.path) + suffix)
                if extra.exists():
                    shutil.move(str(extra), str(aside) + suffix)
            self._notice(f"the LLM cache {self.path} was damaged ({reason}); moved it to "
                         f"{aside.name} and started a new, empty cache")
            self._conn = self._connect()
        except (OSError, sqlite3.DatabaseError) as e:
            self._fail(f"the LLM cache {self.path} is damaged and could not be replaced ({e}); "
                       "continuing without a cache")

    def _notice(self, message: str) -> None:
        self.notices.append(message)
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _fail(self, message: str) -> None:
        self.broken = message
        self._conn = None
        self._notice(message)

    def _run(self, sql: str, args: tuple = (), fetch: bool = False):
        if self._conn is None:
            return None
        try:
            with self._lock:
                cur = self._conn.execute(sql, args)
                if fetch:
                    return cur.fetchone()
                self._conn.commit()
                return None
        except sqlite3.DatabaseError as e:
            self._fail(f"the LLM cache {self.path} failed ({e}); continuing without a cache")
            return None

    # ----------------------------------------------------------------------------- answers
    def get(self, key: str) -> dict | None:
        """The stored response of ``key`` (with ``_cost_usd``, ``_model``, ``_backend`` added),
        or None."""
        row = self._run("SELECT response, cost_usd, model, backend FROM answers WHERE key=?",
                        (key,), fetch=True)
        if row is None:
            return None
        response = json.loads(row[0])
        response.update(_cost_usd=row[1], _model=row[2], _backend=row[3])
        return response

    def put(self, key: str, response: dict, *, model: str, backend: str,
            request: dict | None = None, cost_usd: float = 0.0) -> None:
        """Store one answer (a no-op for a read-only recording)."""
        if self.readonly:
            return
        self._run("INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?)",
                  (key, model, backend, canonical_json(request) if request else None,
                   canonical_json(response), float(cost_usd), time.time()))

    # ----------------------------------------------------------------------------- embeddings
    def get_embedding(self, key: str) -> np.ndarray | None:
        row = self._run("SELECT vector FROM embeddings WHERE key=?", (key,), fetch=True)
        return None if row is None else np.frombuffer(row[0], dtype=np.float32).copy()

    def put_embedding(self, key: str, vector: np.ndarray, model: str) -> None:
        if self.readonly:
            return
        v = np.asarray(vector, dtype=np.float32)
        self._run("INSERT OR REPLACE INTO embeddings VALUES (?,?,?,?,?)",
                  (key, model, int(v.size), v.tobytes(), time.time()))

    # ----------------------------------------------------------------------------- inspection
    def models(self) -> dict[str, int]:
        """How many answers each model has in the file (most first)."""
        if self._conn is None:
            return {}
        try:
            with self._lock:
                rows = self._conn.execute("SELECT model, count(*) FROM answers GROUP BY model "
                                          "ORDER BY count(*) DESC").fetchall()
        except sqlite3.DatabaseError:
            return {}
        return {m: n for m, n in rows}

    def __bool__(self) -> bool:  # an empty cache is still a cache
        return True

    def __len__(self) -> int:
        row = self._run("SELECT count(*) FROM answers", fetch=True)
        return int(row[0]) if row else 0

    def close(self) -> None:
        if self._conn is not None:
            with self._lock:
                self._conn.close()
            self._conn = None

    def __repr__(self) -> str:
        state = f"broken: {self.broken}" if self.broken else f"{len(self)} answers"
        return f"ResponseCache({str(self.path)!r}, {'read-only, ' if self.readonly else ''}{state})"
