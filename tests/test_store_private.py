"""Issue 22's findings on the person store: a store set aside is deleted and `tryon cache
clear` leaves no file (N4), expired persons go at open and on the timer (N13), `tryon cache
info` only looks (N11), and a store that failed is tried again (N8)."""
import logging
import sqlite3
import threading
import time

from test_person_store import Clock, person
from tryon.cli import app
from tryon.store import base
from tryon.store import MemoryStore, SQLiteStore
from typer.testing import CliRunner


def rows(folder) -> int:
    with sqlite3.connect(folder / SQLiteStore.FILE) as db:
        return db.execute("SELECT COUNT(*) FROM persons").fetchone()[0]


def test_a_broken_store_an_older_version_set_aside_is_deleted_at_open(tmp_path):
    (tmp_path / "persons.sqlite3.broken").write_bytes(b"persons of an older store")
    SQLiteStore(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [SQLiteStore.FILE]


def test_cache_clear_leaves_no_file(tmp_path):
    store = SQLiteStore(tmp_path / "cache")
    for n in (1, 2):
        store.put(person(n))
    (tmp_path / "cache" / "persons.sqlite3.broken").write_bytes(b"left by an older version")
    done = CliRunner().invoke(app, ["cache", "clear", "--cache", str(tmp_path / "cache")])
    assert done.exit_code == 0 and "removed 2 parsed persons" in done.output
    assert list((tmp_path / "cache").iterdir()) == []
    assert store.get("id0001") is None and store.info()["persons"] == 0  # a store in use starts afresh


def test_expired_persons_are_purged_when_the_store_opens(tmp_path):
    clock = Clock()
    store = SQLiteStore(tmp_path, ttl_s=3600, clock=clock)
    store.put(person(1))
    clock.now += 3000
    store.put(person(2))
    clock.now += 601
    assert rows(tmp_path) == 2  # 1 expired, still on disk while nothing writes
    SQLiteStore(tmp_path, ttl_s=3600, clock=clock)
    assert rows(tmp_path) == 1


def test_the_timer_purges_an_idle_store(tmp_path):
    clock = Clock()
    sqlite, memory = SQLiteStore(tmp_path, ttl_s=3600, clock=clock), MemoryStore(ttl_s=3600, clock=clock)
    for store in (sqlite, memory):
        store.put(person(1))
    clock.now += 3601
    assert rows(tmp_path) == 1 and memory.info()["persons"] == 1
    base.purge_all()  # what the timer thread runs every PURGE_EVERY_S seconds
    assert rows(tmp_path) == 0 and memory.info()["persons"] == 0
    assert any(thread.name == "tryon-store-purge" and thread.daemon for thread in threading.enumerate())


def test_the_timer_makes_no_store_where_its_folder_went(tmp_path):
    store = SQLiteStore(tmp_path / "cache")
    store.clear()
    assert store.purge_expired() == 0 and not (tmp_path / "cache" / SQLiteStore.FILE).exists()


def test_cache_info_on_a_mistyped_folder_makes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["cache", "info", "--cache", "./typo"])
    assert done.exit_code == 0 and "no store at ./typo" in done.output
    assert list(tmp_path.iterdir()) == []


def test_cache_info_on_a_corrupt_store_reports_it_and_changes_nothing(tmp_path):
    damaged = b"this is not a database" * 100
    (tmp_path / SQLiteStore.FILE).write_bytes(damaged)
    done = CliRunner().invoke(app, ["cache", "info", "--cache", str(tmp_path)])
    assert done.exit_code == 0 and "the store cannot be used" in done.output and "not a database" in done.output
    assert [p.name for p in tmp_path.iterdir()] == [SQLiteStore.FILE]
    assert (tmp_path / SQLiteStore.FILE).read_bytes() == damaged


def test_cache_info_reads_a_store_without_purging_it(tmp_path):
    clock = Clock()
    SQLiteStore(tmp_path, ttl_s=3600, clock=clock).put(person(1))
    clock.now += 3601
    assert SQLiteStore(tmp_path, ttl_s=3600, clock=clock, create=False).info()["persons"] == 1
    assert rows(tmp_path) == 1


def test_a_store_that_failed_is_tried_again_after_retry_s(tmp_path, caplog):
    """N8: a folder that could not be written turned caching off until a restart."""
    (tmp_path / "cache").write_text("a file where the folder goes")
    with caplog.at_level(logging.WARNING, logger="tryon.store"):
        store = SQLiteStore(tmp_path / "cache", retry_s=0.3)
        store.put(person(1))
        assert store.disabled and store.get("id0001") is None
        (tmp_path / "cache").unlink()  # the operator mends it
        store.put(person(1))
        assert store.get("id0001") is None  # not tried again before retry_s
        time.sleep(0.4)
        store.put(person(1))
    assert store.get("id0001") is not None and not store.disabled
    assert caplog.text.count("cannot be used") == 1 and "is back" in caplog.text
