"""The person store's interface, `PersonStore`, and the timer that purges expired persons.

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
import threading
import time
import weakref
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
        self.count("misses" if found is None else "hits")
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
        """Since the store was made: `get`s that found a person (hits) and that did not (misses:
        unknown, expired, evicted, or the store down), and persons removed because they expired or
        to stay under `max_bytes` (evictions); this process's, and what `count` added of others'."""
        with self._counts_lock:
            return dict(self._counts)

    def count(self, name: str, n: int = 1):
        """Add n to a counter: this store's own, or lookups another process made in the same store
        (a Parse replica on Ray Serve, for the Ingress's /metrics)."""
        with self._counts_lock:
            self._counts[name] += n

    def expires_at(self, created: float) -> float:
        return created + self.ttl_s

    def _purge_on_timer(self):
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
