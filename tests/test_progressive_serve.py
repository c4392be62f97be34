"""POST /v1/persons with progressive=true (issue 21): a preview at once, the exact parse in the
background under the same person_id, and the parse's quality at every surface.

In-process on the tiny models, with the default parse (three scales and the mirror), so that
the preview (one 288 square) differs from the exact parse."""
import base64
import logging
import time
import warnings

import pytest
from test_serve_persons import photo, post_person
from tryon.examples import EXAMPLE_GARMENT
from tryon.images import decode
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.serve.limits import Limits
from tryon.store import MemoryStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

CLOTH = EXAMPLE_GARMENT.read_bytes()


@pytest.fixture(scope="module")
def tryon(tiny_models_dir):
    return TryOn.from_dir(tiny_models_dir, provider="cpu")


@pytest.fixture()
def client(tryon):
    tryon.store = None
    with TestClient(create_app(tryon, store=MemoryStore(), limits=Limits(predress=0)),
                    base_url="http://localhost") as client:
        yield client


def current_quality(client, person_id: str, until: str, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        quality = client.get(f"/v1/persons/{person_id}").json()["parse_quality"]
        if quality == until or time.monotonic() > deadline:
            return quality
        time.sleep(0.1)


def test_progressive_answers_a_preview_then_the_exact_parse_takes_its_place(client, tryon):
    data = photo(101)
    answer = post_person(client, data, need_pre=False, progressive=True)
    assert answer.status_code == 201, answer.text
    preview = answer.json()
    assert preview["parse_quality"] == "preview" and not preview["cached"]
    person_id = preview["person_id"]
    assert current_quality(client, person_id, "full") == "full"  # the same id, now the exact parse
    exact = client.get(f"/v1/persons/{person_id}").json()
    reference = tryon.parse(decode(data), need_pre=False)  # a parse that never made a preview
    assert exact["keypoints"] == [[float(v) for v in point] for point in reference.keypoints]
    assert exact["confidence"] == reference.confidence
    labels = client.get(f"/v1/persons/{person_id}/labels.png")
    assert decode(labels.content).shape == (256, 192, 3)
    again = post_person(client, data, need_pre=False, progressive=True)  # the exact parse is found
    assert again.status_code == 200 and again.json()["parse_quality"] == "full"


def test_the_api_default_is_the_exact_parse(client):
    answer = post_person(client, photo(102), need_pre=False)
    assert answer.status_code == 201 and answer.json()["parse_quality"] == "full"


def test_every_try_on_says_which_parse_it_used_and_wait_full_waits_for_the_exact(client):
    person_id = post_person(client, photo(103), need_pre=False, progressive=True).json()["person_id"]
    png = client.post("/v1/tryon", data={"person_id": person_id}, files={"cloth": ("c.jpg", CLOTH)})
    assert png.status_code == 200 and png.headers["X-Tryon-Parse-Quality"] in ("preview", "full")
    waited = client.post("/v1/tryon", data={"person_id": person_id, "wait": "full", "format": "json"},
                         files={"cloth": ("c.jpg", CLOTH)})
    assert waited.status_code == 200 and waited.json()["parse_quality"] == "full"
    assert decode(base64.b64decode(waited.json()["image_png_base64"])).shape == (256, 192, 3)
    several = client.post(f"/v1/persons/{person_id}/tryon", files=[("cloth", ("c.jpg", CLOTH))])
    assert [garment["parse_quality"] for garment in several.json()] == ["full"]
    assert client.post("/v1/tryon", data={"person_id": person_id}, files={"cloth": ("c.jpg", CLOTH)}) \
        .headers["X-Tryon-Parse-Quality"] == "full"


def test_a_failed_exact_parse_is_logged_and_the_preview_stays(client, monkeypatch, caplog):
    inference = client.app.state.service.inference

    async def broken(photo, options):
        raise RuntimeError("the exact parse broke")

    monkeypatch.setattr(inference, "parse_background", broken)
    with caplog.at_level(logging.ERROR, logger="tryon.serve"):
        person_id = post_person(client, photo(104), need_pre=False, progressive=True).json()["person_id"]
        waited = client.post("/v1/tryon", data={"person_id": person_id, "wait": "full", "format": "json"},
                             files={"cloth": ("c.jpg", CLOTH)})
    assert waited.status_code == 200 and waited.json()["parse_quality"] == "preview"
    assert "the exact parse broke" in caplog.text
    assert client.get(f"/v1/persons/{person_id}").json()["parse_quality"] == "preview"


def test_a_person_deleted_during_its_exact_parse_stays_deleted(client):
    service = client.app.state.service
    person_id = post_person(client, photo(105), need_pre=False, progressive=True).json()["person_id"]
    assert client.delete(f"/v1/persons/{person_id}").status_code == 204
    deadline = time.monotonic() + 300
    while service.follow.pending(person_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not service.follow.pending(person_id)
    assert client.get(f"/v1/persons/{person_id}").status_code == 404
