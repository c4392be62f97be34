"""`SQLiteStore`: a person store in a file that the processes of one machine share, by
`PersonStore`'s rules; `default_cache_dir` is where it is unless told otherwise."""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import Callable

from .base import DEFAULT_MAX_BYTES, DEFAULT_TTL_S, PersonStore, log


def default_cache_dir() -> Path:
    """Where `tryon` keeps its person store unless told otherwise (XDG's cache folder)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tryon-onnx"


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
        self.count("evictions", purged)
        return purged

    def _evict(self, db, purged: int = 0):
        """Keeps the most recently used persons whose sizes (with their dressed entries) add up
        to the cap; commits, then counts them and the `purged` ones as evictions."""
        evicted = db.execute("DELETE FROM persons WHERE id IN (SELECT id FROM (SELECT p.id, SUM(p.size + COALESCE(d.size, 0)) "
                   "OVER (ORDER BY p.used DESC, p.id ROWS UNBOUNDED PRECEDING) AS running FROM persons p LEFT JOIN "
                   "(SELECT person_id, SUM(size) AS size FROM dressed GROUP BY person_id) d ON d.person_id = p.id) "
                   "WHERE running > ?)", (self.max_bytes,)).rowcount
        db.execute("COMMIT")
        self.count("evictions", purged + evicted)

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
