"""Person stores: parsed persons kept by id between `TryOn.parse` and `TryOn.dress`.

`open_store(url_or_dir)` opens the one a location names, `StoreSettings` is that location
with its limits as the CLI, the service and the engines configure it. `store.base` holds the
interface, `PersonStore`, and its rules; the stores are `store.memory_store` (this process),
`store.sqlite_store` (a file of this machine) and `store.redis_store` (Redis). Import them from
here: `from tryon.store import MemoryStore`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import DEFAULT_MAX_BYTES, DEFAULT_TTL_S, PersonStore
from .memory_store import MemoryStore
from .sqlite_store import SQLiteStore, default_cache_dir


@dataclass(frozen=True)
class StoreSettings:
    """Where parsed persons are kept and for how long: the `--cache` options, a Serve
    config's `store`, or a catalogue's. `location` as `open_store` reads it."""
    location: str | None = None
    ttl_hours: float = DEFAULT_TTL_S / 3600
    max_mb: float = DEFAULT_MAX_BYTES / 2**20

    def open(self, create: bool = True) -> "PersonStore":
        return open_store(self.location, int(self.max_mb * 2**20), self.ttl_hours * 3600, create)


def open_store(location: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               ttl_s: float = DEFAULT_TTL_S, create: bool = True) -> "PersonStore":
    """The store a location names: "memory" (this process only), redis://HOST:PORT/DB (a
    Redis server that several hosts share; its own maxmemory policy caps the size), or a
    folder for the SQLite store (default: `default_cache_dir()`; with `create=False` one that
    is only looked at, as SQLiteStore says)."""
    if str(location) == "memory":
        return MemoryStore(max_bytes, ttl_s)
    from .redis_store import RedisStore, is_redis_url

    if is_redis_url(location):
        return RedisStore(location, max_bytes, ttl_s)
    return SQLiteStore(Path(location) if location is not None else default_cache_dir(), max_bytes, ttl_s,
                       create=create)
