"""The pre-dressed gallery (issue 21): after each parse the service dresses the first --predress
gallery garments in the background and keeps each PNG beside the person in the person store; a
try-on found there runs no GMM/TOM and gives the bytes of a fresh dress; the entries go with the
person; background work yields to requests; a failure there never reaches a client."""
import base64
import dataclasses
import logging
import time
import warnings

import anyio
import numpy as np
import pytest
from test_parse_dress import CountingSession
from test_person_store import Clock
from test_serve_persons import photo, post_person
from tryon.images import encode
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.serve.gallery import Gallery
from tryon.serve.limits import InferenceGate, Limits
from tryon.store import MemoryStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TTL_S = 3600


@pytest.fixture(scope="module")
def tryon(tiny_models_dir):
    """One scale, no mirror; GMM and TOM runs counted."""
    tryon = TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)
    for name in ("gmm_person", "gmm", "tom"):
        if getattr(tryon.cpvton, name) is not None:
            setattr(tryon.cpvton, name, CountingSession(getattr(tryon.cpvton, name)))
    return tryon


def cpvton_runs(tryon) -> int:
    return sum(getattr(tryon.cpvton, name).runs for name in ("gmm_person", "gmm", "tom")
               if getattr(tryon.cpvton, name) is not None)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(3)
    for i in range(3):
        (folder / f"shirt-{i}.png").write_bytes(encode(rng.integers(0, 256, (256, 192, 3), dtype=np.uint8), ".png"))
    return Gallery.load([folder])  # the bundled T-shirt and these three


@pytest.fixture()
def clock():
    return Clock()


@pytest.fixture()
def client(tryon, gallery, clock):
    app = create_app(tryon, store=MemoryStore(ttl_s=TTL_S, clock=clock), gallery=gallery, limits=Limits(predress=3))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def dressed_when_done(client, person_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        answer = client.get(f"/v1/persons/{person_id}/dressed")
        assert answer.status_code == 200, answer.text
        if not answer.json()["pending"] or time.monotonic() > deadline:
            return answer.json()
        time.sleep(0.05)


def test_a_pre_dressed_try_on_runs_no_gmm_or_tom_and_gives_a_fresh_dress_bytes(client, tryon, gallery):
    person_id = post_person(client, photo(201), need_pre=False).json()["person_id"]
    dressed = dressed_when_done(client, person_id)
    ids = [garment.id for garment in gallery.garments.values()]
    assert [g["id"] for g in dressed["garments"]] == ids[:3]  # --predress 3 of the four
    assert [g["parse_quality"] for g in dressed["garments"]] == ["full"] * 3
    before = cpvton_runs(tryon)
    kept = client.post("/v1/tryon", data={"person_id": person_id, "garment": ids[1]})
    assert kept.status_code == 200 and cpvton_runs(tryon) == before  # no GMM, no TOM
    assert "kept" in kept.headers["Server-Timing"] and kept.headers["X-Tryon-Parse-Quality"] == "full"
    fresh = client.post(f"/v1/persons/{person_id}/tryon", data={"garment": ids[1]})  # this route never keeps
    assert cpvton_runs(tryon) > before
    assert base64.b64decode(fresh.json()[0]["image_png_base64"]) == kept.content
    assert client.get(dressed["garments"][1]["url"]).content == kept.content
    as_json = client.post("/v1/tryon", data={"person_id": person_id, "garment": ids[1], "format": "json"}).json()
    assert base64.b64decode(as_json["image_png_base64"]) == kept.content and as_json["parse_quality"] == "full"


def test_a_garment_dressed_on_demand_is_kept_too(client, tryon, gallery):
    person_id = post_person(client, photo(202), need_pre=False).json()["person_id"]
    dressed_when_done(client, person_id)
    last = list(gallery.garments)[3]  # beyond --predress
    first = client.post("/v1/tryon", data={"person_id": person_id, "garment": last})
    before = cpvton_runs(tryon)
    again = client.post("/v1/tryon", data={"person_id": person_id, "garment": last})
    assert again.content == first.content and cpvton_runs(tryon) == before
    flags = client.post("/v1/tryon", data={"person_id": person_id, "garment": last, "keep_back": "true"})
    assert cpvton_runs(tryon) > before and flags.status_code == 200  # other dress flags: another entry


def test_the_entries_go_with_the_person(client, clock, gallery):
    store = client.app.state.service.store
    first = post_person(client, photo(203), need_pre=False).json()["person_id"]
    url = dressed_when_done(client, first)["garments"][0]["url"]
    assert client.get(url).status_code == 200
    assert client.delete(f"/v1/persons/{first}").status_code == 204
    assert client.get(url).status_code == 404 and store.info()["dressed"] == 0
    second = post_person(client, photo(204), need_pre=False).json()["person_id"]
    url = dressed_when_done(client, second)["garments"][0]["url"]
    assert client.get(url).status_code == 200
    clock.now += TTL_S + 1
    assert client.get(url).status_code == 404
    assert client.get(f"/v1/persons/{second}/dressed").status_code == 404


def test_a_refused_person_is_not_dressed_ahead(client, tryon):
    service = client.app.state.service
    parsed = tryon.parse(photo(206), need_pre=False)
    refused = dataclasses.replace(parsed, confidence=0.0, reason="no upright person found")  # every garment: the photo
    service.store.put(refused)
    before = cpvton_runs(tryon)
    client.portal.call(service.follow._predress, refused)
    dressed = dressed_when_done(client, refused.id)
    assert [g["parse_quality"] for g in dressed["garments"]] == [None] * 3 and cpvton_runs(tryon) == before


def test_a_failed_background_dress_is_logged_and_never_answered(client, monkeypatch, caplog, gallery):
    inference = client.app.state.service.inference

    async def broken(parsed, garments, options):
        raise RuntimeError("the background dress broke")

    monkeypatch.setattr(inference, "dress_background", broken)
    with caplog.at_level(logging.ERROR, logger="tryon.serve"):
        person_id = post_person(client, photo(205), need_pre=False).json()["person_id"]
        dressed = dressed_when_done(client, person_id)
    assert "the background dress broke" in caplog.text
    assert [g["parse_quality"] for g in dressed["garments"]] == [None] * 3
    answer = client.post("/v1/tryon", data={"person_id": person_id, "garment": list(gallery.garments)[0]})
    assert answer.status_code == 200


def test_a_request_waits_at_most_for_the_one_background_step_running():
    """Ten background steps are queued; a request arriving during the first runs right after it."""
    events = []

    def step(name):
        events.append(f"start {name}")
        time.sleep(0.05)
        events.append(f"end {name}")

    async def scenario():
        gate = InferenceGate(max_concurrent=1, queue=4)
        async with anyio.create_task_group() as group:
            for i in range(10):
                group.start_soon(gate.run_background, step, f"background {i}")
            while "start background 0" not in events:
                await anyio.sleep(0.001)
            await gate.run(None, step, "request")

    anyio.run(scenario)
    started = [event for event in events if event.startswith("start")]
    assert started.index("start request") == 1  # after the one step that was running, before every other
    assert len(started) == 11
