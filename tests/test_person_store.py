"""The person stores: same rules for memory, SQLite and Redis; SQLite across processes and broken files."""
import logging
import multiprocessing
import sqlite3

import numpy as np
import pytest
from tryon.options import ParseOptions
from tryon.parsed_person import ParsedPerson
from tryon.pipeline import TryOn
from tryon.store import MemoryStore, SQLiteStore


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def person(n: int) -> ParsedPerson:
    """A parsed person of random (incompressible) pixels: about 150 KB stored."""
    rng = np.random.default_rng(n)
    return ParsedPerson(f"id{n:04d}", rng.integers(0, 256, (256, 192, 3), dtype=np.uint8),
                        rng.integers(0, 20, (256, 192), dtype=np.uint8), rng.integers(0, 192, (16, 2)),
                        0.5, "", ParseOptions(need_pre=False))


SIZE = len(person(0).to_bytes())


def test_a_person_is_compressed_once_and_a_changed_copy_again(monkeypatch):
    """The stored form is made once per person (the store, then a Ray replica's answer, reuse
    it) and a person read from bytes gives those bytes back; `replace` makes a new person."""
    from dataclasses import replace

    original = person(1)
    saved = []
    real = np.savez_compressed
    monkeypatch.setattr(np, "savez_compressed", lambda *a, **k: saved.append(1) or real(*a, **k))
    data = original.to_bytes()
    assert original.to_bytes() is data and len(saved) == 1
    read = ParsedPerson.from_bytes(data)
    assert read.to_bytes() is data and len(saved) == 1
    refused = replace(read, confidence=0.0, reason="crossed arms")
    assert ParsedPerson.from_bytes(refused.to_bytes()).reason == "crossed arms" and len(saved) == 2
    assert np.array_equal(read.labels, original.labels) and read.to_bytes() == original.to_bytes()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request, tmp_path):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")  # skips, saying how, without redis-server
        server.flush()

    def make(**kwargs):
        if request.param == "memory":
            return MemoryStore(**kwargs)
        if request.param == "redis":
            from tryon.store.redis_store import RedisStore

            return RedisStore(server.url, **kwargs)
        return SQLiteStore(tmp_path / "cache", **kwargs)
    make.kind = request.param
    return make


def on_our_clock(make_store):
    """Tests that move a fake clock: Redis expires and evicts by its own clock and
    maxmemory policy (test_redis_store.py tests those on a real server)."""
    if make_store.kind == "redis":
        pytest.skip("Redis expires entries by its own clock and caps size by its maxmemory policy")


def test_a_stored_person_comes_back_whole(make_store):
    store = make_store()
    original = person(1)
    store.put(original)
    back = store.get(original.id)
    assert back.id == original.id and back.options == original.options
    assert np.array_equal(back.person, original.person) and np.array_equal(back.keypoints, original.keypoints)
    assert store.get("unknown") is None
    assert store.info()["persons"] == 1 and store.info()["bytes"] == len(original.to_bytes())


def test_delete_and_clear_remove_at_once(make_store):
    store = make_store()
    for n in range(3):
        store.put(person(n))
    assert store.delete("id0001") and not store.delete("id0001")
    assert store.get("id0001") is None and store.get("id0000") is not None
    assert store.clear() == 2 and store.info()["persons"] == 0


def test_entries_expire_after_the_ttl_even_when_used(make_store):
    on_our_clock(make_store)
    clock = Clock()
    store = make_store(ttl_s=3600, clock=clock)
    store.put(person(1))
    clock.now += 3000
    assert store.get("id0001") is not None  # a use does not extend a person's life
    clock.now += 601
    assert store.get("id0001") is None


def test_stored_at_is_the_time_of_the_put_until_the_person_expires(make_store):
    on_our_clock(make_store)
    clock = Clock()
    store = make_store(ttl_s=3600, clock=clock)
    parsed_at = clock.now
    store.put(person(1))
    clock.now += 10
    assert store.stored_at("id0001") == parsed_at and store.stored_at("unknown") is None
    assert store.expires_at(store.stored_at("id0001")) == parsed_at + 3600
    clock.now = parsed_at + 3600
    assert store.stored_at("id0001") is None
    store.put(person(2))
    assert store.delete("id0002") and store.stored_at("id0002") is None


def test_the_least_recently_used_go_first_past_the_size_cap(make_store):
    on_our_clock(make_store)
    clock = Clock()
    store = make_store(max_bytes=int(SIZE * 2.5), clock=clock)
    for n in (1, 2):
        store.put(person(n))
        clock.now += 1
    assert store.get("id0001") is not None  # now 2 is the least recently used
    clock.now += 1
    store.put(person(3))
    assert store.get("id0002") is None
    assert store.get("id0001") is not None and store.get("id0003") is not None
    assert store.info()["bytes"] <= store.max_bytes


def test_hits_misses_and_evictions_are_counted(make_store):
    """Expiry and the size cap are both evictions; a lookup of an expired or evicted person a miss."""
    on_our_clock(make_store)
    clock = Clock()
    store = make_store(max_bytes=int(SIZE * 2.5), ttl_s=3600, clock=clock)
    assert store.counters() == {"hits": 0, "misses": 0, "evictions": 0}
    store.put(person(1))
    assert store.get("id0001") is not None and store.get("unknown") is None
    assert store.counters() == {"hits": 1, "misses": 1, "evictions": 0}
    clock.now += 3600
    assert store.get("id0001") is None
    store.purge_expired()  # memory dropped it at the lookup, SQLite drops it now: one eviction either way
    assert store.counters() == {"hits": 1, "misses": 2, "evictions": 1}
    for n in (2, 3, 4):  # three do not fit: 2, the least recently used, goes
        store.put(person(n))
        clock.now += 1
    assert store.get("id0002") is None and store.get("id0004") is not None
    assert store.counters() == {"hits": 2, "misses": 3, "evictions": 2}


def _writer(folder, first):
    store = SQLiteStore(folder)
    for n in range(first, first + 15):
        store.put(person(n))
        assert store.get(f"id{n:04d}") is not None


def test_two_processes_write_one_store(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(tmp_path, first)) for first in (0, 100)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    store = SQLiteStore(tmp_path)
    assert store.info()["persons"] == 30 and not store.disabled
    assert all(store.get(f"id{n:04d}") is not None for n in (*range(15), *range(100, 115)))


@pytest.mark.parametrize("damage", ["garbage", "foreign", "version 1"])
def test_a_corrupt_foreign_or_other_version_file_is_deleted_and_rebuilt(tmp_path, caplog, damage):
    """Issue 22, N4: such a file may hold persons; it was kept as persons.sqlite3.broken."""
    path = tmp_path / SQLiteStore.FILE
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE invoices (n INTEGER)" if damage == "foreign" else
                       f"PRAGMA application_id = {SQLiteStore.APPLICATION_ID}")
    with caplog.at_level(logging.WARNING, logger="tryon.store"):
        store = SQLiteStore(tmp_path)
        store.put(person(1))
    assert store.get("id0001") is not None and not store.disabled
    assert "is not a readable tryon store" in caplog.text and "deleted it" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir() if "broken" in p.name) == []  # deleted, not set aside
    assert SQLiteStore(tmp_path).get("id0001") is not None  # and the rebuilt one is ours from now on


def test_a_file_damaged_while_in_use_is_rebuilt_too(tmp_path, caplog):
    store = SQLiteStore(tmp_path)
    store.put(person(1))
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"persons.sqlite3{suffix}").unlink(missing_ok=True)
    (tmp_path / "persons.sqlite3").write_bytes(b"\x00garbage" * 1000)
    with caplog.at_level(logging.WARNING, logger="tryon.store"):
        assert store.get("id0001") is None
        store.put(person(2))
    assert store.get("id0002") is not None and not store.disabled


@pytest.mark.parametrize("blocker", ["parent is a file", "database is a folder"])
def test_a_store_that_cannot_be_written_turns_caching_off_with_a_warning(tmp_path, caplog, blocker):
    if blocker == "parent is a file":
        (tmp_path / "file").write_text("x")
        folder = tmp_path / "file" / "cache"
    else:
        folder = tmp_path
        (folder / SQLiteStore.FILE).mkdir()
    with caplog.at_level(logging.WARNING, logger="tryon.store"):
        store = SQLiteStore(folder)
        store.put(person(1))
    assert store.get("id0001") is None and store.disabled
    assert store.delete("id0001") is False and store.clear() == 0 and store.info()["persons"] == 0
    assert caplog.text.count("cannot be used") == 1 and "requests still run" in caplog.text


def test_a_full_disk_turns_caching_off_and_requests_still_succeed(tiny_models_dir, tmp_path, viton_pair,
                                                                  monkeypatch, caplog):
    store = SQLiteStore(tmp_path)
    connect = store._connect

    def full_disk():  # SQLite's own "database or disk is full", as on a full file system
        db = connect()
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        return db

    monkeypatch.setattr(store, "_connect", full_disk)
    tryon = TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False, store=store)
    with caplog.at_level(logging.WARNING, logger="tryon.store"):
        result = tryon.predict(*viton_pair, need_pre=False)
    assert result.image.shape == (256, 192, 3)
    assert "full" in store.disabled and "not cached" in caplog.text


def test_a_record_of_another_version_reads_as_missing(tmp_path):
    store = SQLiteStore(tmp_path)
    store.put(person(1))
    with sqlite3.connect(tmp_path / SQLiteStore.FILE) as db:
        db.execute("UPDATE persons SET data = ?", (b"PK\x03\x04 old format",))
    assert store.get("id0001") is None and store.info()["persons"] == 0
