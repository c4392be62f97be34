"""`MemoryStore`: the person store of this process, by `PersonStore`'s rules."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from .base import DEFAULT_MAX_BYTES, DEFAULT_TTL_S, PersonStore


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
            self.count("evictions")
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
        self.count("evictions", len(expired))
        return len(expired)

    def _evict(self):
        self._drop_expired()
        total = sum(entry.size for entry in self._entries.values())
        while total > self.max_bytes and self._entries:
            total -= self._entries.popitem(last=False)[1].size
            self.count("evictions")

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
