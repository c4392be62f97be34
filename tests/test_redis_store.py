"""The Redis person store on a real redis-server: TTL by the server's clock, shared between
processes, its own keys only, and a server that goes away and comes back."""
import logging
import multiprocessing
import time

import pytest
from test_catalogue import FAST, inputs  # noqa: F401 (a fixture)
from test_person_store import person
from tryon.cli import app
from tryon.pipeline import TryOn
from tryon.store import open_store
from typer.testing import CliRunner


@pytest.fixture()
def redis_url(redis_server):
    redis_server.flush()
    return redis_server.url


def test_open_store_names_redis_and_the_entries_live_ttl_from_the_put(redis_url):
    import redis

    store = open_store(redis_url, ttl_s=1.5)
    assert type(store).__name__ == "RedisStore"
    before = time.time()
    store.put(person(1))
    client = redis.Redis.from_url(redis_url)
    key = store.prefix + "id0001"
    assert 0 < client.pttl(key) <= 1500
    assert before - 0.05 <= store.stored_at("id0001") <= time.time() + 0.05  # the put, from the time left
    time.sleep(0.5)
    assert store.get("id0001") is not None
    assert client.pttl(key) <= 1000  # reading did not extend it
    time.sleep(1.2)
    assert store.get("id0001") is None and client.exists(key) == 0


def test_hits_and_misses_are_counted_and_the_servers_evictions_read_as_misses(redis_url):
    """The server expires and evicts (here by `allkeys-lru` past its maxmemory) without this
    process knowing: those persons are misses when looked up, and there is no evictions count."""
    import redis

    client = redis.Redis.from_url(redis_url)
    store = open_store(redis_url, ttl_s=0.5)
    store.put(person(1))
    assert store.get("id0001") is not None and store.get("unknown") is None
    time.sleep(0.6)
    assert store.get("id0001") is None
    assert store.counters() == {"hits": 1, "misses": 2}
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 4 * len(person(0).to_bytes()))
    client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        store = open_store(redis_url)
        for n in range(10):
            store.put(person(n))
        found = sum(store.get(f"id{n:04d}") is not None for n in range(10))
    finally:
        client.config_set("maxmemory", 0)
        client.config_set("maxmemory-policy", "noeviction")
    assert 0 < found < 10 and not store.disabled and store.counters() == {"hits": found, "misses": 10 - found}


def test_clear_and_info_touch_only_the_stores_keys(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set("someone:else", b"theirs")
    store = open_store(redis_url)
    for n in range(3):
        store.put(person(n))
    facts = store.info()
    assert facts["persons"] == 3 and facts["bytes"] == sum(len(person(n).to_bytes()) for n in range(3))
    assert facts["server_maxmemory_policy"] == "noeviction" and "maxmemory" in facts["size_cap"]
    assert store.delete("id0001") and not store.delete("id0001")
    assert store.clear() == 2 and store.info()["persons"] == 0
    assert client.get("someone:else") == b"theirs"


def test_a_url_that_is_not_redis_says_what_is_expected():
    with pytest.raises(ValueError, match=r"expected redis://HOST:PORT/DB"):
        open_store("redis://localhost:notaport/0")


def _parse_in_another_process(url):
    open_store(url).put(person(7))


def test_a_person_stored_by_one_process_is_read_by_another(redis_url):
    worker = multiprocessing.get_context("spawn").Process(target=_parse_in_another_process, args=(redis_url,))
    worker.start()
    worker.join(120)
    assert worker.exitcode == 0
    back = open_store(redis_url).get("id0007")
    assert back is not None and (back.person == person(7).person).all()


def test_redis_down_warns_once_serves_uncached_and_comes_back(redis_server, tmp_path, caplog):
    from redis_process import RedisServer
    from tryon.store.redis_store import RedisStore

    server = RedisServer(tmp_path / "redis.log").start()
    try:
        store = RedisStore(server.url, retry_s=1.0, timeout_s=0.5)
        store.put(person(1))
        server.stop()
        with caplog.at_level(logging.WARNING, logger="tryon.store"):
            store.put(person(2))
            assert store.get("id0001") is None and store.delete("id0001") is False and store.clear() == 0
            assert store.info()["persons"] == 0 and store.disabled
        assert caplog.text.count("cannot be reached") == 1 and "requests still run" in caplog.text
        server.start()
        assert store.get("id0002") is None and store.disabled  # not asked again before retry_s
        time.sleep(1.1)
        with caplog.at_level(logging.WARNING, logger="tryon.store"):
            store.put(person(3))
        assert "is back" in caplog.text and not store.disabled
        assert store.get("id0003") is not None
    finally:
        server.stop()


def test_a_request_succeeds_with_redis_unreachable(tiny_models_dir, viton_pair, redis_server, caplog):
    from redis_process import free_port
    from tryon.store.redis_store import RedisStore

    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)  # nothing listens there
    tryon = TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False, store=store)
    with caplog.at_level(logging.WARNING, logger="tryon.store"):
        result = tryon.predict(*viton_pair, need_pre=False)
    assert result.image.shape == (256, 192, 3) and "cannot be reached" in caplog.text


def test_catalogue_and_cache_info_take_the_store_by_its_url(tiny_models_dir, inputs, redis_url, tmp_path):  # noqa: F811
    persons, garments = inputs
    (garments / "torn.png").unlink()
    fast = [arg for arg in FAST if arg != "--no-cache"]
    done = CliRunner().invoke(app, ["catalogue", str(persons), str(garments), "-o", str(tmp_path / "out"),
                                    "--models", str(tiny_models_dir), *fast, "--store", redis_url])
    assert done.exit_code == 0, done.output
    assert open_store(redis_url).info()["persons"] == 2  # both persons, parsed once each
    info = CliRunner().invoke(app, ["cache", "info", "--cache", redis_url])
    assert info.exit_code == 0 and "redis" in info.output and "persons: 2" in info.output


def test_serve_takes_the_store_by_its_url(tiny_models_dir, redis_url, tmp_path):
    """A typed Path once made redis://HOST:PORT/DB a SQLite folder named redis:/HOST:PORT/DB."""
    import json
    import urllib.request

    from serve_process import FAST, serve_process

    with serve_process(tiny_models_dir, tmp_path / "serve.log", *FAST, "--cache", redis_url) as server:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as answer:
            assert json.load(answer)["store"]["kind"] == "redis"


def test_cache_info_names_the_redis_server_and_its_cap(redis_url):
    from test_cli import tryon

    done = tryon("cache", "info", "--cache", redis_url)
    assert done.returncode == 0, done.stderr
    assert f"store: redis {redis_url}" in done.stdout and "size capped by the Redis server's maxmemory" in done.stdout
