"""A person store in Redis, for several hosts (or Ray replicas) that share parsed persons.

The rules of `store.base.PersonStore`, kept the Redis way:

- TTL: each person is a hash (field `person`, and a field per dressed entry) given an expiry
  of `ttl_s` when it is parsed; reading it does not extend it, and Redis removes it, dressed
  entries included, on time by its own clock.
- Size: the cap is the Redis server's: its `maxmemory` and `maxmemory-policy` (set
  `allkeys-lru` or `volatile-lru` for least-recently-used eviction). `max_bytes` is not
  enforced here; `info()` reports the server's settings beside it.
- Counters: hits and misses as every store counts them (a person the server expired or
  evicted reads as a miss); no evictions, as this process removes no person itself.
- `delete` removes a person at once; `clear` removes this store's keys only (SCAN + DEL on
  its prefix), never the rest of the database.
- Redis down or failing: the call answers as if nothing was cached, with one warning per
  outage; the store tries the server again `retry_s` seconds later, and says when it is back.

Needs the `redis` package (extra `[redis]`); imported when a store is made, not before.
"""
from __future__ import annotations

import time
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from ..errors import InputError, RuntimeSetupError
from .base import DEFAULT_MAX_BYTES, DEFAULT_TTL_S, PersonStore

SCHEMES = ("redis", "rediss")


def is_redis_url(location) -> bool:
    return isinstance(location, str) and location.split("://", 1)[0] in SCHEMES and "://" in location


def redacted(url: str) -> str:
    """The URL without its password, for logs and info()."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class RedisStore(PersonStore):
    kind = "redis"
    FAILING = "cannot be reached"
    COUNTED = ("hits", "misses")  # the server expires and evicts, unseen by this process
    prefix = "tryon:person2:"  # 2: a hash per person; the strings the older store wrote expire under tryon:person:
    # A dressed entry is written only into a person that is there, in one step on the server.
    PUT_DRESSED = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end"
    SIZES = ("local total, fields = 0, 0 for _, key in ipairs(KEYS) do for _, name in ipairs(redis.call('HKEYS', key)) "
             "do total, fields = total + redis.call('HSTRLEN', key, name), fields + 1 end end return {total, fields}")

    def __init__(self, url: str, max_bytes: int = DEFAULT_MAX_BYTES, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time, retry_s: float = 30.0, timeout_s: float = 2.0):
        super().__init__(max_bytes, ttl_s, clock, retry_s)
        try:
            import redis
        except ImportError:
            raise RuntimeSetupError(f"the person store {redacted(url)} needs the redis package: "
                                    "pip install 'tryon-onnx[redis]'") from None
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        except ValueError as exc:
            raise InputError(f"person store {redacted(url)}: {exc}; expected redis://HOST:PORT/DB") from None
        self._errors = (redis.RedisError, OSError)
        self.url = self.location = redacted(url)
        self._put_dressed = self._client.register_script(self.PUT_DRESSED)
        self._sizes = self._client.register_script(self.SIZES)

    def _read(self, person_id):
        return self._call(lambda r: r.hget(self.prefix + person_id, "person"), None)

    def _write(self, person_id, data):  # a replaced person keeps its dressed fields, which live as long as it
        key = self.prefix + person_id
        self._call(lambda r: r.pipeline(transaction=True).hset(key, "person", data)
                   .pexpire(key, max(1, int(self.ttl_s * 1000))).execute(), None)

    def put_dressed(self, person_id, key, png):
        self._call(lambda r: self._put_dressed(keys=[self.prefix + person_id], args=["dressed:" + key, png],
                                               client=r), None)

    def get_dressed(self, person_id, key):
        return self._call(lambda r: r.hget(self.prefix + person_id, "dressed:" + key), None)

    def stored_at(self, person_id):
        """From the time the entry has left: Redis set it to expire `ttl_s` after the put."""
        left_ms = self._call(lambda r: r.pttl(self.prefix + person_id), -2)
        return None if left_ms < 0 else self.clock() - (self.ttl_s - left_ms / 1000)

    def delete(self, person_id):
        return bool(self._call(lambda r: r.delete(self.prefix + person_id), 0))

    def clear(self):
        return self._call(lambda r: sum(r.delete(*batch) for batch in self._batches(r)), 0)

    def info(self):
        def read(r):
            batches = self._batches(r)
            sizes = [self._sizes(keys=batch, client=r) for batch in batches]  # (bytes, fields) of each
            persons = sum(map(len, batches))
            memory = r.info("memory")
            return {"persons": persons, "bytes": sum(s[0] for s in sizes),
                    "dressed": sum(s[1] for s in sizes) - persons,
                    **{f"server_{name}": memory.get(name) for name in ("maxmemory", "maxmemory_policy", "used_memory")}}
        found = self._call(read, {"persons": 0, "bytes": 0, "dressed": 0})
        return {**super().info(), "url": self.url, **found,
                "size_cap": "the Redis server's maxmemory and maxmemory-policy"}

    def _batches(self, r) -> list[list[bytes]]:
        """This store's keys (SCAN on its prefix), 500 at a time."""
        keys = list(r.scan_iter(match=self.prefix + "*", count=500))  # the prefix has no glob characters
        return [keys[n:n + 500] for n in range(0, len(keys), 500)]

    def _call(self, command, fallback):
        if self._resting():
            return fallback
        try:
            answer = command(self._client)
        except self._errors as exc:
            self._failed(exc)
            return fallback
        self._recovered()
        return answer
