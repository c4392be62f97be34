"""Parse once, dress many over HTTP: /v1/persons, /v1/tryon with a person_id, the store behind them.

In-process on the tiny models; JPP-Net runs are counted on the parse stage's session.
"""
import base64
import warnings
from datetime import datetime

import numpy as np
import pytest
from test_parse_dress import CountingSession
from test_person_store import Clock
from test_serve_api import assert_refused
from tryon.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON
from tryon.images import decode, encode
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.serve.limits import Limits
from tryon.sheet import LIP_COLOURS
from tryon.store import MemoryStore, SQLiteStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PERSON = EXAMPLE_PERSON.read_bytes()
CLOTH = EXAMPLE_GARMENT.read_bytes()
TTL_S = 3600


def photo(n: int) -> bytes:
    """The example photo with one pixel changed: a photo no store has parsed yet."""
    rgb = decode(PERSON)
    rgb[0, 0] = (n % 256, n // 256, 11)
    return encode(rgb, ".png")


@pytest.fixture(scope="module")
def tryon(tiny_models_dir):
    """One scale, no mirror, JPP-Net runs counted."""
    tryon = TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)
    tryon.parse_stage.session = CountingSession(tryon.parse_stage.session)
    return tryon


@pytest.fixture(scope="module")
def clock():
    return Clock()


@pytest.fixture(scope="module")
def client(tryon, clock):
    app = create_app(tryon, store=MemoryStore(ttl_s=TTL_S, clock=clock), limits=Limits(max_garments=3))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def runs(tryon) -> int:
    return tryon.parse_stage.session.runs


def post_person(client, data: bytes, **flags):
    return client.post("/v1/persons", files={"person": ("p.png", data)},
                       data={k: str(v).lower() for k, v in flags.items()})


def test_a_photo_is_parsed_once_then_found(client, tryon, clock):
    before = runs(tryon)
    first = post_person(client, photo(1), need_pre=False)
    assert first.status_code == 201, first.text
    body = first.json()
    assert runs(tryon) == before + 1 and body["cached"] is False
    assert body["options"] == {"need_pre": False, "need_bright": False, "check_dirty": False}
    assert any(name.startswith("parse.") for name in body["timings_ms"])
    assert first.headers["location"] == f"/v1/persons/{body['person_id']}"
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires.timestamp() == pytest.approx(clock.now + TTL_S, abs=1)
    expected = tryon.parse(photo(1), need_pre=False)
    assert body["person_id"] == expected.id and body["confidence"] == pytest.approx(expected.confidence)

    again = post_person(client, photo(1), need_pre=False)
    assert again.status_code == 200 and again.json()["cached"] is True
    assert again.json()["person_id"] == body["person_id"] and runs(tryon) == before + 1
    other_flags = post_person(client, photo(1), need_pre=False, need_bright=True)
    assert other_flags.status_code == 201 and other_flags.json()["person_id"] != body["person_id"]


def test_cloth_parses_a_photo_sent_twice_once(client, tryon):
    request = {"image_person": base64.b64encode(photo(2)).decode(), "image_cloth": base64.b64encode(CLOTH).decode()}
    before = runs(tryon)
    first = client.post("/cloth", json=request)
    second = client.post("/cloth", json=request)
    assert first.status_code == second.status_code == 200
    assert runs(tryon) == before + 1
    assert first.json()["output_image"] == second.json()["output_image"]
    assert not any(name.startswith("parse.") for name in second.json()["timings_ms"])


def test_tryon_with_a_person_id_runs_no_jppnet_and_gives_the_photos_bytes(client, tryon):
    person_id = post_person(client, photo(3)).json()["person_id"]
    before = runs(tryon)
    by_id = client.post("/v1/tryon", data={"person_id": person_id, "garment": "garment_tshirt", "keep_back": "true"})
    assert by_id.status_code == 200, by_id.text
    assert runs(tryon) == before and by_id.headers["x-tryon-person-id"] == person_id
    by_photo = client.post("/v1/tryon", files={"person": ("p.png", photo(3))},
                           data={"garment": "garment_tshirt", "keep_back": "true"})
    assert by_photo.content == by_id.content
    expected = tryon.predict(photo(3), decode(EXAMPLE_GARMENT.read_bytes()), keep_back=True)
    assert np.array_equal(decode(by_id.content), expected.image)
    stages = by_id.headers["server-timing"]
    assert "cpvton.gmm" in stages and "parse." not in stages
    same_flag = client.post("/v1/tryon", data={"person_id": person_id, "garment": "garment_tshirt",
                                               "need_pre": "true", "format": "json"})
    assert same_flag.status_code == 200 and same_flag.json()["person_id"] == person_id


@pytest.mark.parametrize("files, data, status, words", [
    ({"person": ("p.jpg", PERSON)}, {"person_id": "PID", "garment": "garment_tshirt"}, 422, ["not both"]),
    ({}, {"garment": "garment_tshirt"}, 422, ["give a person", "person_id"]),
    ({}, {"person_id": "0" * 32, "garment": "garment_tshirt"}, 404, ["unknown, deleted or expired",
                                                                      "POST /v1/persons"]),
    ({}, {"person_id": "../../etc", "garment": "garment_tshirt"}, 404, ["POST /v1/persons"]),
    ({}, {"person_id": "PID", "garment": "garment_tshirt", "need_pre": "false"}, 422,
     ["parsed with need_pre=true", "need_pre=false", "POST /v1/persons"]),
    ({}, {"person_id": "PID"}, 422, ["give a garment"]),
    ({}, {"person_id": "PID", "garment": "garment_tshirt", "keep_back": "perhaps"}, 422, ["keep_back", "boolean"]),
])
def test_tryon_by_person_id_refuses_with_a_reason(client, files, data, status, words):
    person_id = post_person(client, photo(4)).json()["person_id"]
    data = {k: v.replace("PID", person_id) for k, v in data.items()}
    assert_refused(client.post("/v1/tryon", files=files, data=data), status, *words)


def test_metadata_labels_and_delete(client, tryon):
    created = post_person(client, photo(5)).json()
    person_id = created["person_id"]
    info = client.get(f"/v1/persons/{person_id}")
    assert info.status_code == 200 and info.headers["cache-control"] == "no-store"
    body = info.json()
    assert {k: body[k] for k in ("person_id", "expires_at", "options")} == \
        {k: created[k] for k in ("person_id", "expires_at", "options")}
    parsed = tryon.parse(photo(5))
    assert np.array_equal(np.array(body["keypoints"]), parsed.keypoints)
    labels = decode(client.get(body["labels_url"]).content)
    assert labels.shape == (256, 192, 3)
    assert np.array_equal(labels, LIP_COLOURS[parsed.labels])

    assert client.delete(f"/v1/persons/{person_id}").status_code == 204
    for response in (client.delete(f"/v1/persons/{person_id}"), client.get(f"/v1/persons/{person_id}"),
                     client.get(f"/v1/persons/{person_id}/labels.png"),
                     client.post("/v1/tryon", data={"person_id": person_id, "garment": "garment_tshirt"})):
        assert_refused(response, 404, "upload the photo again")


def test_an_expired_person_is_a_404_that_says_to_upload_again(client, clock):
    person_id = post_person(client, photo(6)).json()["person_id"]
    clock.now += TTL_S + 1
    assert_refused(client.post("/v1/tryon", data={"person_id": person_id, "garment": "garment_tshirt"}), 404,
                   "expired", "kept 1 h", "POST /v1/persons")


def test_many_garments_at_once_in_the_order_sent(client, tryon):
    person_id = post_person(client, photo(7)).json()["person_id"]
    red = encode(np.full((256, 192, 3), (200, 0, 0), np.uint8), ".png")
    before = runs(tryon)
    response = client.post(f"/v1/persons/{person_id}/tryon",
                           files=[("cloth", ("a.jpg", CLOTH)), ("cloth", ("b.png", red))],
                           data={"garment": "garment_tshirt", "keep_back": "true"})
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["garment"] for r in results] == ["cloth[0]", "cloth[1]", "garment_tshirt"]
    assert runs(tryon) == before
    parsed = tryon.parse(photo(7))
    expected = tryon.dress(parsed, [CLOTH, red, CLOTH], keep_back=True)
    for result, want in zip(results, expected):
        image = decode(base64.b64decode(result["image_png_base64"]))
        assert np.abs(image.astype(int) - want.image).max() <= 1  # batched like dress: within one uint8 step
        assert result["person_id"] == person_id and result["confidence"] == pytest.approx(want.confidence)


def test_a_garment_that_does_not_decode_gets_its_own_answer_and_the_others_are_dressed(client, tryon):
    person_id = post_person(client, photo(12)).json()["person_id"]
    torn = CLOTH[:len(CLOTH) // 2]  # its header passes: only the decode finds it bad
    red = encode(np.full((256, 192, 3), (200, 0, 0), np.uint8), ".png")
    response = client.post(f"/v1/persons/{person_id}/tryon",
                           files=[("cloth", ("a.jpg", CLOTH)), ("cloth", ("torn.jpg", torn)),
                                  ("cloth", ("c.png", red))])
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["index"] for a in answers] == [0, 1, 2]
    assert [a["garment"] for a in answers] == ["cloth[0]", "cloth[1]", "cloth[2]"]
    bad = answers[1]
    assert bad["ok"] is False and bad["image_png_base64"] is None and bad["confidence"] == 0
    assert bad["reason"].startswith("garment photo") and "corrupt or truncated" in bad["reason"]
    expected = tryon.dress(tryon.parse(photo(12)), [CLOTH, red])
    for answer, want in zip(answers[::2], expected):
        image = decode(base64.b64decode(answer["image_png_base64"]))
        assert np.abs(image.astype(int) - want.image).max() <= 1 and answer["reason"] == ""
    one = client.post("/v1/tryon", data={"person_id": person_id}, files={"cloth": ("torn.jpg", torn)})
    assert_refused(one, 422, "garment photo", "corrupt or truncated")  # alone, it refuses the request


@pytest.mark.parametrize("files, data, status, words", [
    ([], {}, 422, ["one garment at least"]),
    ([("cloth", ("c.jpg", CLOTH))] * 2, {"garment": ["garment_tshirt"] * 2}, 422, ["4 garments", "limit of 3"]),
    ([("cloth", ("c.jpg", CLOTH)), ("cloth", ("x.gif", b"GIF89a" + bytes(40)))], {}, 415, ["cloth[1]", "JPEG"]),
    ([], {"garment": "nope"}, 422, ["'nope'", "garment_tshirt"]),
    ([], {"garment": "garment_tshirt", "need_dilate": "2"}, 422, ["need_dilate"]),
])
def test_many_garments_refuses_with_a_reason(client, files, data, status, words):
    person_id = post_person(client, photo(8)).json()["person_id"]
    assert_refused(client.post(f"/v1/persons/{person_id}/tryon", files=files, data=data), status, *words)


def test_many_garments_for_an_unknown_person_is_a_404(client):
    assert_refused(client.post("/v1/persons/0123abcd/tryon", data={"garment": "garment_tshirt"}), 404,
                   "POST /v1/persons")


@pytest.mark.parametrize("files, status, words", [
    ({}, 422, ["person: Field required"]),
    ({"person": ("p.gif", b"GIF89a" + bytes(40))}, 415, ["JPEG, PNG, BMP or WebP"]),
    ({"person": ("p.png", b"")}, 422, ["empty"]),
])
def test_persons_refuses_bad_photos(client, files, status, words):
    assert_refused(client.post("/v1/persons", files=files), status, *words)


def test_persons_refuses_bad_flags(client):
    response = client.post("/v1/persons", files={"person": ("p.png", photo(9))}, data={"check_dirty": "sometimes"})
    assert_refused(response, 422, "check_dirty", "boolean")


def test_healthz_reports_the_store(client):
    post_person(client, photo(10))
    store = client.get("/healthz").json()["store"]
    assert store["kind"] == "memory" and store["persons"] >= 1 and store["ttl_s"] == TTL_S
    assert store["disabled"] == "" and "path" not in store


def test_a_store_that_cannot_keep_persons_says_so_and_one_call_tryons_still_work(tryon, tmp_path):
    (tmp_path / "file").write_text("x")
    store = SQLiteStore(tmp_path / "file" / "cache")  # cannot be created: caching is off
    app = create_app(TryOn(tryon.parse_stage, tryon.cpvton, tryon.models, tryon.jppnet_graph, store))
    with TestClient(app, base_url="http://localhost") as client:
        assert "NotADirectoryError" in client.get("/healthz").json()["store"]["disabled"]
        assert_refused(post_person(client, photo(11)), 503, "could not keep", "POST /v1/tryon")
        response = client.post("/v1/tryon", files={"person": ("p.png", photo(11))}, data={"garment": "garment_tshirt"})
        assert response.status_code == 200


def test_the_jpeg_options_reach_the_routes(client, tryon):
    """jpeg_dct on the parse routes, warp_jpeg on the dress routes: the library's bytes."""
    fast = post_person(client, PERSON, need_pre=False, jpeg_dct="fast")
    assert fast.status_code in (200, 201), fast.text
    expected = tryon.parse(PERSON, need_pre=False, jpeg_dct="fast")
    assert fast.json()["person_id"] == expected.id != tryon.parse(PERSON, need_pre=False).id
    dressed = client.post(f"/v1/persons/{expected.id}/tryon", files={"cloth": ("c.png", CLOTH)},
                          data={"warp_jpeg": "true"})
    assert dressed.status_code == 200, dressed.text
    [answer] = dressed.json()
    jpeg = tryon.dress(expected, CLOTH, warp_jpeg=True)[0].image
    assert np.array_equal(decode(base64.b64decode(answer["image_png_base64"])), jpeg)
    assert not np.array_equal(jpeg, tryon.dress(expected, CLOTH)[0].image)
    one = client.post("/v1/tryon", files={"person": ("p.jpg", PERSON), "cloth": ("c.png", CLOTH)},
                      data={"need_pre": "false", "jpeg_dct": "fast", "warp_jpeg": "true"})
    assert one.status_code == 200, one.text
    assert one.headers["x-tryon-person-id"] == expected.id and np.array_equal(decode(one.content), jpeg)
    assert np.array_equal(tryon.predict(PERSON, CLOTH, need_pre=False, jpeg_dct="fast", warp_jpeg=True).image, jpeg)
    changed = client.post("/v1/tryon", files={"cloth": ("c.png", CLOTH)},
                          data={"person_id": expected.id, "jpeg_dct": "accurate"})
    assert_refused(changed, 422, "jpeg_dct")


def test_a_405_names_every_method_of_the_path(client):
    """N9: Starlette named only the first matching route's methods (Allow: GET)."""
    for method in ("OPTIONS", "PUT", "PATCH"):
        refused = client.request(method, "/v1/persons/0123abcd")
        assert refused.status_code == 405
        assert set(refused.headers["allow"].split(", ")) == {"GET", "DELETE"}, refused.headers["allow"]
    assert client.request("PUT", "/v1/tryon").headers["allow"] == "POST"


def test_an_empty_cloth_part_keeps_the_others_in_their_place(client, tryon):
    """N7: an empty part (a browser's untouched file input) was dropped and the later parts
    renumbered, so cloth[1] named the third upload."""
    person_id = post_person(client, photo(9)).json()["person_id"]
    empty_then_two = [("cloth", ("a.jpg", CLOTH)), ("cloth", ("empty.jpg", b"")), ("cloth", ("c.png", CLOTH))]
    response = client.post(f"/v1/persons/{person_id}/tryon", files=empty_then_two)
    assert response.status_code == 200, response.text
    assert [r["garment"] for r in response.json()] == ["cloth[0]", "cloth[2]"]
    gif = ("cloth", ("x.gif", b"GIF89a" + bytes(40)))
    refused = client.post(f"/v1/persons/{person_id}/tryon", files=[*empty_then_two[:2], gif])
    assert_refused(refused, 415, "cloth[2]")
