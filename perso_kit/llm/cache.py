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

**Where teachers put recordings.** A recording is opened read-only (SQLite ``mode=ro``); when
its folder or the file cannot be written (a shared drive, a read-only mount, ``chmod -R a-w``;
permission bits that deny every write count even for root) it is opened ``immutable``, so no
``-wal``/``-shm`` file is needed or made beside it. A cache file that exists but cannot be
written is used the same way: its answers are read, new ones are not stored (a notice says so).

**Recordings of the offline stand-in.** The stand-in's answers are keyed with its version too
(a new stand-in never reuses old answers). A file recorded with the stand-in replays when this
kit's stand-in has the same version (:meth:`ResponseCache.stand_in_recording` checks the stored
requests); one made by another version is refused with a message that says so, not reported as
a missing request.

**What goes wrong, said plainly.** A cache whose folder is read-only or cannot be created is
reported as such, and the client goes on without a cache. A file that is not a SQLite file (or
is damaged) is moved aside (``<name>.damaged-<time>``) and a fresh cache started -- except a
recording opened for replay, which is never moved (ask for a fresh copy). If the disk fails
mid-session the cache turns itself off with a warning. It never crashes a call.

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
import os
import shutil
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import quote

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


class CacheLocationError(Exception):
    """The cache file cannot be made where it was asked for (the message says why)."""


def writable(path: Path) -> bool:
    """Can the kit write at ``path`` (a file or folder)? False when it is missing, when the OS
    says no, or when its permission bits deny every write (``chmod a-w``; honoured for root
    too, who could otherwise write anyway)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return os.access(path, os.W_OK) and bool(mode & 0o222)


def what_is_wrong(error: Exception) -> str:
    """A SQLite error in words: "not a SQLite file", "read-only", ... (for messages).

    >>> what_is_wrong(sqlite3.DatabaseError("file is not a database"))
    'not a SQLite file, or damaged (file is not a database)'
    """
    text = str(error)
    if "not a database" in text or "malformed" in text:
        return f"not a SQLite file, or damaged ({text})"
    if "no such table" in text:
        return f"a SQLite file, but not an LLM cache or recording ({text})"
    if "readonly" in text or "read-only" in text:
        return f"read-only ({text})"
    return f"damaged or unreadable ({text})"


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
    def _connect_readonly(self) -> sqlite3.Connection:
        """Open the file for lookups only; ``immutable`` when nothing may be written beside it
        (then SQLite makes no ``-shm``/``-wal`` file and takes no lock)."""
        if not self.path.exists():
            raise FileNotFoundError(self.path)
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        if not (writable(self.path.parent) and writable(self.path)):
            uri += "&immutable=1"
            wal = Path(str(self.path) + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                self._notice(f"{wal} holds answers not yet merged into {self.path.name}, and "
                             "the folder is read-only, so they cannot be read; copy both files "
                             "to a writable folder, or ask for the file made after closing")
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        conn.execute("SELECT count(*) FROM answers").fetchone()
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return self._connect_readonly()
        folder = self.path.parent
        if self.path.exists() and not (writable(self.path) and writable(folder)):
            conn = self._connect_readonly()  # a recording on a read-only drive: still useful
            self.readonly = True
            self._notice(f"the LLM cache {self.path} is read-only (the file or its folder "
                         "cannot be written): its answers are used, new answers are not "
                         "stored; set PERSO_KIT_LLM_CACHE to a file in a writable folder to "
                         "keep them")
            return conn
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        try:
            if existing != folder and not writable(existing):
                raise OSError(f"{existing} is read-only")
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheLocationError(f"its folder {folder} does not exist and cannot be created "
                                     f"({e.strerror or e})") from None
        if not self.path.exists() and not writable(folder):
            raise CacheLocationError(f"its folder {folder} is read-only")
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
            where = ("" if self.path.parent.is_dir()
                     else f" (its folder {self.path.parent} does not exist either)")
            self._fail(f"recorded file {self.path} does not exist{where}")
            return
        except CacheLocationError as e:
            self._fail(f"cannot create the LLM cache {self.path}: {e}; continuing without a "
                       "cache (set PERSO_KIT_LLM_CACHE to a file in a writable folder, or off)")
            return
        except sqlite3.DatabaseError as e:
            reason = what_is_wrong(e)
        if self.readonly:
            self._fail(f"recorded file {self.path} is {reason}; ask for a fresh copy")
            return
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            if not writable(self.path.parent):
                raise CacheLocationError(f"its folder {self.path.parent} is read-only")
            shutil.move(str(self.path), str(aside))
            for suffix in ("-wal", "-shm"):
                extra = Path(str(self.path) + suffix)
                if extra.exists():
                    shutil.move(str(extra), str(aside) + suffix)
            self._notice(f"the LLM cache {self.path} was {reason}; moved it to "
                         f"{aside.name} and started a new, empty cache")
            self._conn = self._connect()
        except (OSError, sqlite3.DatabaseError, CacheLocationError) as e:
            self._fail(f"the LLM cache {self.path} is {reason}, and could not be moved aside "
                       f"or replaced ({e}); continuing without a cache (set "
                       "PERSO_KIT_LLM_CACHE to another file, or off)")

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
    def stand_in_recording(self, model: str, version: str, rows: int = 200) -> str:
        """Whether the file's answers of ``model`` were made by the offline stand-in, and by
        which version: ``"none"`` (no stand-in answers), ``"same"`` (version ``version``: they
        replay), ``"other"`` (another version: they cannot). Decided by recomputing the keys of
        up to ``rows`` stored requests.

        >>> import tempfile, os
        >>> c = ResponseCache(os.path.join(tempfile.mkdtemp(), "c.sqlite"))
        >>> req = {"model": "stand-in", "messages": [{"role": "user", "content": "hi"}]}
        >>> c.put(request_key(req, stand_in_version="2"), {"text": "hello"}, model="stand-in",
        ...       backend="offline", request=req)
        >>> c.stand_in_recording("stand-in", "2"), c.stand_in_recording("stand-in", "3")
        ('same', 'other')
        """
        if self._conn is None:
            return "none"
        try:
            with self._lock:
                found = self._conn.execute(
                    "SELECT key, request FROM answers WHERE backend='offline' AND model=? "
                    "LIMIT ?", (model, int(rows))).fetchall()
        except sqlite3.DatabaseError:
            return "none"
        if not found:
            return "none"
        for key, request in found:
            if request and request_key(json.loads(request), stand_in_version=version) == key:
                return "same"
        return "other"

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
