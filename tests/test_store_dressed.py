"""Dressed entries (a person's try-ons, by key) in every person store: they live only while
their person lives, survive a put that replaces it, and count toward the store's bytes."""
import time

import pytest
from test_person_store import Clock, on_our_clock, person
from tryon.store import MemoryStore, SQLiteStore



@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request, tmp_path):
    """As test_person_store's fixture of the same name."""
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        server.flush()

    def make(**kwargs):
        if request.param == "redis":
            from tryon.store.redis_store import RedisStore

            return RedisStore(server.url, **kwargs)
        return MemoryStore(**kwargs) if request.param == "memory" else SQLiteStore(tmp_path / "cache", **kwargs)
    make.kind = request.param
    return make


SIZE = len(person(1).to_bytes())
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # stands in for a try-on's bytes


def test_a_dressed_entry_comes_back_and_counts_in_info(make_store):
    store = make_store()
    store.put(person(1))
    store.put_dressed("id0001", "garment-a/exact", PNG)
    store.put_dressed("id0001", "garment-b/exact", PNG[:100])
    assert store.get_dressed("id0001", "garment-a/exact") == PNG
    assert store.get_dressed("id0001", "garment-b/exact") == PNG[:100]
    assert store.get_dressed("id0001", "garment-c/exact") is None and store.get_dressed("unknown", "x") is None
    facts = store.info()
    assert facts["persons"] == 1 and facts["dressed"] == 2 and facts["bytes"] == SIZE + len(PNG) + 100


def test_a_person_not_in_the_store_takes_no_dressed_entry(make_store):
    store = make_store()
    store.put_dressed("id0001", "k", PNG)
    store.put(person(1))
    assert store.get_dressed("id0001", "k") is None and store.info()["dressed"] == 0


def test_a_put_that_replaces_the_person_keeps_its_dressed_entries(make_store):
    store = make_store()
    store.put(person(1))
    store.put_dressed("id0001", "k", PNG)
    store.put(person(1))
    assert store.get_dressed("id0001", "k") == PNG and store.info()["bytes"] == SIZE + len(PNG)


def test_delete_and_clear_take_the_dressed_entries(make_store):
    store = make_store()
    for n in (1, 2):
        store.put(person(n))
        store.put_dressed(f"id{n:04d}", "k", PNG)
    assert store.delete("id0001")
    assert store.get_dressed("id0001", "k") is None and store.get_dressed("id0002", "k") == PNG
    store.put(person(1))  # back again: its old try-ons are not
    assert store.get_dressed("id0001", "k") is None
    assert store.clear() == 2
    assert store.get_dressed("id0002", "k") is None and store.info()["bytes"] == 0


def test_dressed_entries_expire_with_the_person(make_store):
    on_our_clock(make_store)
    clock = Clock()
    store = make_store(ttl_s=3600, clock=clock)
    store.put(person(1))
    clock.now += 3000
    store.put_dressed("id0001", "k", PNG)  # written late, it still ends with the person
    assert store.get_dressed("id0001", "k") == PNG
    clock.now += 601
    assert store.get_dressed("id0001", "k") is None
    store.put(person(1))
    assert store.get_dressed("id0001", "k") is None and store.info()["bytes"] == SIZE


def test_dressed_bytes_count_toward_the_cap_and_go_with_their_person(make_store):
    on_our_clock(make_store)
    clock = Clock()
    store = make_store(max_bytes=SIZE + len(person(2).to_bytes()) + len(PNG) * 2, clock=clock)
    for n in (1, 2):
        store.put(person(n))
        clock.now += 1
    store.put_dressed("id0002", "a", PNG)
    clock.now += 1
    store.put_dressed("id0002", "b", PNG)  # 2 persons and 2 dressed: at the cap, nothing goes
    assert store.get("id0001") is not None
    clock.now += 1
    store.put_dressed("id0001", "c", PNG)  # past it: 2, now the least recently used, goes with its dressed
    assert store.get("id0002") is None and store.get_dressed("id0002", "a") is None
    assert store.get_dressed("id0001", "c") == PNG and store.info()["bytes"] == SIZE + len(PNG)


def test_redis_keeps_the_dressed_entries_in_the_persons_key_with_its_expiry(redis_server):
    import redis
    from tryon.store.redis_store import RedisStore

    redis_server.flush()
    store = RedisStore(redis_server.url, ttl_s=1.5)
    store.put(person(1))
    store.put_dressed("id0001", "k", PNG)
    client = redis.Redis.from_url(redis_server.url)
    assert client.keys("*") == [(store.prefix + "id0001").encode()] and 0 < client.pttl(store.prefix + "id0001") <= 1500
    time.sleep(1.6)
    assert store.get_dressed("id0001", "k") is None and client.keys("*") == []


def test_a_store_error_reads_as_missing(tmp_path):
    (tmp_path / SQLiteStore.FILE).mkdir()  # a folder where the file should be
    store = SQLiteStore(tmp_path)
    store.put_dressed("id0001", "k", PNG)
    assert store.get_dressed("id0001", "k") is None and store.disabled


@pytest.fixture()
def redis_down():
    from redis_process import free_port
    from tryon.store.redis_store import RedisStore

    return RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)


def test_redis_unreachable_reads_as_missing(redis_down):
    redis_down.put_dressed("id0001", "k", PNG)
    assert redis_down.get_dressed("id0001", "k") is None and redis_down.disabled
