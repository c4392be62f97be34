"""The person store's interface, and the stores of one machine: `MemoryStore` (this process)
and `SQLiteStore` (a file several processes share).

Every store has the same rules: an entry lives at most `ttl_s` seconds from when it was
parsed (a person photo is personal data), the least recently used entries go first when the
total passes `max_bytes`, and `delete` removes a person at once. A store that fails never
fails a request: it warns and the request runs as if nothing was cached, and the store is
tried again `retry_s` later. Expired persons are purged when a store opens and every
`PURGE_EVERY_S` seconds after, so an idle store does not keep them. Each store counts, in this
process, its hits, misses and evictions (`counters`) for GET /metrics.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import OrderedDict
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..parsed_person import ParsedPerson, StoredPersonError

DEFAULT_TTL_S = 24 * 3600.0
DEFAULT_MAX_BYTES = 512 * 2**20
PURGE_EVERY_S = 60.0
log = logging.getLogger("tryon.store")
_purged: "weakref.WeakSet[PersonStore]" = weakref.WeakSet()  # the stores the timer purges
_timer_lock = threading.Lock()
_timer_pid = 0  # the process whose timer thread runs (a forked child starts its own)


def default_cache_dir() -> Path:
    """Where `tryon` keeps its person store unless told otherwise (XDG's cache folder)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tryon-onnx"


class PersonStore:
    """The interface every store implements; see the module docstring for the rules."""

    kind = "none"
    FAILING = "cannot be used"  # what its outage warning says
    COUNTED = ("hits", "misses", "evictions")  # what `counters` reports

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time, retry_s: float = 30.0):
        if max_bytes <= 0 or ttl_s <= 0:
            raise InputError(f"a person store needs max_bytes > 0 and ttl_s > 0, got {max_bytes} and {ttl_s}")
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self.retry_s = retry_s
        self.location = self.kind  # where it is, for warnings
        self.disabled = ""  # why the store cannot be used now, when it cannot
        self._retry_at = 0.0
        self._outage_lock = threading.Lock()
        self._counts, self._counts_lock = dict.fromkeys(self.COUNTED, 0), threading.Lock()

    def get(self, person_id: str) -> ParsedPerson | None:
        """The person, or None (never stored, expired, evicted, or written by another version)."""
        data = self._read(person_id)
        found = None
        if data is not None:
            try:
                found = ParsedPerson.from_bytes(data)
            except StoredPersonError:  # as good as missing
                self.delete(person_id)
        self._count("misses" if found is None else "hits")
        return found

    def put(self, parsed: ParsedPerson) -> None:
        self._write(parsed.id, parsed.to_bytes())

    def _read(self, person_id: str) -> bytes | None:
        """The stored bytes of a live entry, counted as a use."""
        raise NotImplementedError

    def _write(self, person_id: str, data: bytes) -> None:
        raise NotImplementedError

    def put_dressed(self, person_id: str, key: str, png: bytes) -> None:
        """Keeps a try-on of the person under `key`, only while the person lives: it goes
        with them (delete, clear, eviction, expiry) and survives a `put` that replaces
        them. Nothing when the person is not in the store."""
        raise NotImplementedError

    def get_dressed(self, person_id: str, key: str) -> bytes | None:
        raise NotImplementedError

    def stored_at(self, person_id: str) -> float | None:
        """When the person was stored (it expires `ttl_s` later), or None when it is not there.
        Does not count as a use."""
        raise NotImplementedError

    def delete(self, person_id: str) -> bool:
        """True when the person was there."""
        raise NotImplementedError

    def clear(self) -> int:
        """Removes every person; returns how many there were."""
        raise NotImplementedError

    def purge_expired(self) -> int:
        """Removes the expired persons now; how many it removed (Redis expires them itself)."""
        return 0

    def info(self) -> dict:
        return {"kind": self.kind, "max_bytes": self.max_bytes, "ttl_s": self.ttl_s, "disabled": self.disabled}

    def counters(self) -> dict[str, int]:
        """Since the store was made, in this process: `get`s that found a person (hits) and that
        did not (misses: unknown, expired, evicted, or the store down), and persons this process
        removed because they expired or to stay under `max_bytes` (evictions)."""
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, name: str, n: int = 1):
        with self._counts_lock:
            self._counts[name] += n

    def expires_at(self, created: float) -> float:
        return created + self.ttl_s

    def _purge_on_timer(self):
        """Adds the store to those the timer thread purges every PURGE_EVERY_S seconds."""
        global _timer_pid
        with _timer_lock:
            _purged.add(self)
            if _timer_pid != os.getpid():
                _timer_pid = os.getpid()
                threading.Thread(target=_purge_forever, name="tryon-store-purge", daemon=True).start()

    def _resting(self) -> bool:
        """True while the store is down and `retry_s` has not passed since it last failed."""
        with self._outage_lock:
            return bool(self.disabled) and time.monotonic() < self._retry_at

    def _failed(self, exc: Exception):
        with self._outage_lock:
            first, self.disabled = not self.disabled, f"{type(exc).__name__}: {exc}"
            self._retry_at = time.monotonic() + self.retry_s
        if first:
            log.warning("person store %s %s (%s): parsed persons are not cached; requests still run, and the "
                        "store is tried again every %.0f s", self.location, self.FAILING, self.disabled, self.retry_s)

    def _recovered(self):
        with self._outage_lock:
            was, self.disabled = self.disabled, ""
        if was:
            log.warning("person store %s is back (was: %s)", self.location, was)


def purge_all() -> None:
    """What the timer does every PURGE_EVERY_S seconds: each open store's expired persons go."""
    for store in list(_purged):
        store.purge_expired()


def _purge_forever():
    while True:
        time.sleep(PURGE_EVERY_S)
        purge_all()


@dataclass
class _Entry:
    created: float
    data: bytes
    dressed: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.data) + sum(map(len, self.dressed.values()))


class MemoryStore(PersonStore):
    """In this process: an ordered dict of encoded persons, oldest use first."""

    kind = "memory"

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time):
        super().__init__(max_bytes, ttl_s, clock)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._purge_on_timer()

    def _live(self, person_id) -> _Entry | None:
        """The person's entry, counted as a use; an expired one is dropped. Under the lock."""
        entry = self._entries.get(person_id)
        if entry is not None and self.clock() >= self.expires_at(entry.created):
            del self._entries[person_id]
            self._count("evictions")
            return None
        if entry is not None:
            self._entries.move_to_end(person_id)
        return entry

    def _read(self, person_id):
        with self._lock:
            entry = self._live(person_id)
            return entry and entry.data

    def _write(self, person_id, data):
        with self._lock:
            kept = self._live(person_id)
            self._entries[person_id] = _Entry(self.clock(), data, kept.dressed if kept else {})  # last: most recent
            self._evict()

    def put_dressed(self, person_id, key, png):
        with self._lock:
            entry = self._live(person_id)
            if entry is not None:
                entry.dressed[key] = png
                self._evict()

    def get_dressed(self, person_id, key):
        with self._lock:
            entry = self._live(person_id)
            return entry.dressed.get(key) if entry else None

    def purge_expired(self):
        with self._lock:
            return self._drop_expired()

    def _drop_expired(self) -> int:
        now = self.clock()
        expired = [k for k, entry in self._entries.items() if now >= self.expires_at(entry.created)]
        for person_id in expired:
            del self._entries[person_id]
        self._count("evictions", len(expired))
        return len(expired)

    def _evict(self):
        self._drop_expired()
        total = sum(entry.size for entry in self._entries.values())
        while total > self.max_bytes and self._entries:
            total -= self._entries.popitem(last=False)[1].size
            self._count("evictions")

    def stored_at(self, person_id):
        with self._lock:
            entry = self._entries.get(person_id)
        return entry.created if entry and self.clock() < self.expires_at(entry.created) else None

    def delete(self, person_id):
        with self._lock:
            return self._entries.pop(person_id, None) is not None

    def clear(self):
        with self._lock:
            count, self._entries = len(self._entries), OrderedDict()
            return count

    def info(self):
        with self._lock:
            return {**super().info(), "persons": len(self._entries),
                    "bytes": sum(entry.size for entry in self._entries.values()),
                    "dressed": sum(len(entry.dressed) for entry in self._entries.values())}


class SQLiteStore(PersonStore):
    """A SQLite file in `folder`, one short transaction per call and a connection per call,
    so threads and processes share it safely. Deleted rows are overwritten on disk
    (secure_delete). A file that is corrupt, not ours or of another version is deleted (it may
    hold persons) and started afresh; a folder that cannot be written turns caching off, with a
    warning, until `retry_s` has passed. With `create=False` (`tryon cache`) the store is only
    looked at: nothing is made, deleted or purged, and a missing file is an empty store."""

    kind = "sqlite"
    FILE = "persons.sqlite3"
    APPLICATION_ID = 0x7472796F  # "tryo": marks the file as ours
    VERSION = 2  # 2: the dressed table
    # IF NOT EXISTS: two processes may both find the new file empty; the second to get the
    # write lock then finds the table made (it failed with "table persons already exists").
    SCHEMA = ("CREATE TABLE IF NOT EXISTS persons (id TEXT PRIMARY KEY, data BLOB NOT NULL, size INTEGER NOT NULL, "
              "created REAL NOT NULL, used REAL NOT NULL);"
              "CREATE INDEX IF NOT EXISTS persons_used ON persons(used);"
              "CREATE TABLE IF NOT EXISTS dressed (person_id TEXT NOT NULL REFERENCES persons(id) ON DELETE CASCADE, "
              "key TEXT NOT NULL, data BLOB NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (person_id, key)) "
              "WITHOUT ROWID;")

    def __init__(self, folder: str | Path, max_bytes: int = DEFAULT_MAX_BYTES, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time, retry_s: float = 30.0, create: bool = True):
        super().__init__(max_bytes, ttl_s, clock, retry_s)
        self.path = Path(folder) / self.FILE
        self.location, self.create = str(self.path), create
        if create:
            with suppress(OSError):  # an older version set broken stores aside here, persons inside
                self._remove(".broken")
            self._call(self._purge_now, 0)
            self._purge_on_timer()

    def _read(self, person_id):
        return self._call(lambda db: self._touch(db, person_id), None)

    def _write(self, person_id, data):
        self._call(lambda db: self._insert(db, person_id, data), None)

    def put_dressed(self, person_id, key, png):
        self._call(lambda db: self._insert_dressed(db, person_id, key, png), None)

    def get_dressed(self, person_id, key):
        return self._call(lambda db: self._touch(db, person_id, key), None)

    def stored_at(self, person_id):
        row = self._call(lambda db: db.execute("SELECT created FROM persons WHERE id = ? AND created > ?",
                                               (person_id, self.clock() - self.ttl_s)).fetchone(), None)
        return row[0] if row else None

    def delete(self, person_id):
        return self._call(lambda db: db.execute("DELETE FROM persons WHERE id = ?", (person_id,)).rowcount > 0, False)

    def clear(self):
        """Removes the store's files, and with them every person: no trace is left."""
        count = self._call(lambda db: db.execute("SELECT COUNT(*) FROM persons").fetchone()[0], 0)
        try:
            self._remove("", "-wal", "-shm", ".broken")
        except OSError as exc:
            self._failed(exc)
        return count

    def purge_expired(self):
        if not self.path.is_file():  # never makes a store: the timer may outlive its folder
            return 0
        return self._call(self._purge_now, 0)

    def info(self):
        persons, stored, dressed = self._call(lambda db: db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) + (SELECT COALESCE(SUM(size), 0) FROM dressed), "
            "(SELECT COUNT(*) FROM dressed) FROM persons").fetchone(), (0, 0, 0))
        return {**super().info(), "path": str(self.path), "exists": self.path.is_file(), "persons": persons,
                "bytes": stored, "dressed": dressed}

    def _touch(self, db, person_id, dressed_key=None):
        """The person's data (or its dressed entry's), counted as a use of the person."""
        now = self.clock()
        if dressed_key is None:
            row = db.execute("SELECT data FROM persons WHERE id = ? AND created > ?",
                             (person_id, now - self.ttl_s)).fetchone()
        else:
            row = db.execute("SELECT d.data FROM dressed d JOIN persons p ON p.id = d.person_id "
                             "WHERE d.person_id = ? AND d.key = ? AND p.created > ?",
                             (person_id, dressed_key, now - self.ttl_s)).fetchone()
        if row is not None:
            db.execute("UPDATE persons SET used = ? WHERE id = ?", (now, person_id))
        return row[0] if row else None

    def _insert(self, db, person_id: str, data: bytes):
        now = self.clock()
        db.execute("BEGIN IMMEDIATE")
        purged = self._purge(db, now)  # an expired person's dressed entries must not pass to its replacement
        # An upsert, not INSERT OR REPLACE: replacing the row would cascade to its dressed entries.
        db.execute("INSERT INTO persons VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
                   "size = excluded.size, created = excluded.created, used = excluded.used",
                   (person_id, data, len(data), now, now))
        self._evict(db, purged)

    def _insert_dressed(self, db, person_id: str, key: str, png: bytes):
        now = self.clock()
        db.execute("BEGIN IMMEDIATE")
        if db.execute("UPDATE persons SET used = ? WHERE id = ? AND created > ?",
                      (now, person_id, now - self.ttl_s)).rowcount:
            db.execute("INSERT OR REPLACE INTO dressed VALUES (?, ?, ?, ?)", (person_id, key, png, len(png)))
        self._evict(db)

    def _purge(self, db, now: float) -> int:
        return db.execute("DELETE FROM persons WHERE created <= ?", (now - self.ttl_s,)).rowcount

    def _purge_now(self, db) -> int:
        """Removes the expired persons in a transaction of its own, and counts them."""
        purged = self._purge(db, self.clock())
        self._count("evictions", purged)
        return purged

    def _evict(self, db, purged: int = 0):
        """Keeps the most recently used persons whose sizes (with their dressed entries) add up
        to the cap; commits, then counts them and the `purged` ones as evictions."""
        evicted = db.execute("DELETE FROM persons WHERE id IN (SELECT id FROM (SELECT p.id, SUM(p.size + COALESCE(d.size, 0)) "
                   "OVER (ORDER BY p.used DESC, p.id ROWS UNBOUNDED PRECEDING) AS running FROM persons p LEFT JOIN "
                   "(SELECT person_id, SUM(size) AS size FROM dressed GROUP BY person_id) d ON d.person_id = p.id) "
                   "WHERE running > ?)", (self.max_bytes,)).rowcount
        db.execute("COMMIT")
        self._count("evictions", purged + evicted)

    def _connect(self):
        mode = "rwc" if self.create else "rw"
        db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode={mode}", timeout=30, isolation_level=None, uri=True)
        db.execute("PRAGMA secure_delete = ON")
        db.execute("PRAGMA foreign_keys = ON")  # a person's dressed entries go with it
        return db

    def _prepare(self, db):
        """Check the file is ours (making it so when it is new)."""
        application, version = (db.execute(f"PRAGMA {name}").fetchone()[0]
                                for name in ("application_id", "user_version"))
        if application == self.APPLICATION_ID and version == self.VERSION:
            return
        if self.create and application == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(f"BEGIN IMMEDIATE; {self.SCHEMA} PRAGMA application_id = {self.APPLICATION_ID}; "
                             f"PRAGMA user_version = {self.VERSION}; COMMIT;")
            return
        raise sqlite3.DatabaseError(f"not a tryon store: application_id {application:#x}, version {version}")

    def _call(self, statement, fallback):
        """Run `statement(db)` on a fresh connection. A corrupt, foreign or other-version file is
        deleted and the statement tried once more on an empty store; anything else the file
        system refuses turns caching off until `retry_s` has passed, with one warning."""
        if self._resting() or not (self.create or self.path.is_file()):
            return fallback
        for attempt in (1, 2):
            try:
                if attempt == 2:
                    self._remove("", "-wal", "-shm")
                if self.create:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                with closing(self._connect()) as db:
                    self._prepare(db)
                    answer = statement(db)
                self._recovered()
                return answer
            except sqlite3.DatabaseError as exc:  # a corrupt file, another's, or of another version among them
                if "locked" in str(exc) or "busy" in str(exc):  # another process held it past the timeout
                    log.warning("person store %s is busy (%s); this request is not cached", self.path, exc)
                    return fallback
                if isinstance(exc, sqlite3.OperationalError) or attempt == 2 or not self.create:
                    self._failed(exc)
                    return fallback
                log.warning("person store %s is not a readable tryon store (%s); deleted it (with any persons "
                            "in it) and started an empty one", self.path, exc)
            except OSError as exc:
                self._failed(exc)
                return fallback

    def _remove(self, *suffixes: str):
        for suffix in suffixes:
            self.path.with_name(self.FILE + suffix).unlink(missing_ok=True)
