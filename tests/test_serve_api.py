"""The HTTP service in-process: every route, every refusal, and the overload path.

Responses come from the real pipeline on the tiny exported models; only the overload test
wraps predict, to hold the single inference slot busy while a second request arrives.
"""
import base64
import json
import struct
import subprocess
import sys
import threading
from pathlib import Path
import warnings
import zlib

import cv2
import numpy as np
import pytest

from tryon.runtime.images import decode, encode
from tryon.runtime.serve import create_app
from tryon.runtime.serve.seed_route import SEED_FLAGS
from tryon.runtime.tryon import TryOn
from tryon.runtime.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON

with warnings.catch_warnings():  # Starlette nags about its httpx backend on import; nothing to act on
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PERSON = EXAMPLE_PERSON.read_bytes()
CLOTH = EXAMPLE_GARMENT.read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_claiming(width: int, height: int) -> bytes:
    """A small real PNG whose header claims another size: what a decompression bomb looks like."""
    data = bytearray(encode(np.zeros((16, 16, 3), np.uint8), ".png"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="module")
def tiny_tryon(tiny_models_dir):
    """One JPP-Net scale, no mirror: a quarter of the parse time, and the service is the subject."""
    return TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)


@pytest.fixture(scope="module")
def client(tiny_tryon, tmp_path_factory):
    gallery = tmp_path_factory.mktemp("gallery")
    cv2.imwrite(str(gallery / "Red Shirt.jpg"), np.full((256, 192, 3), (0, 0, 200), np.uint8))
    app = create_app(tiny_tryon, gallery=[gallery], max_body_bytes=2 * 2**20)
    with TestClient(app) as client:
        yield client


def assert_refused(response, status: int, *words: str):
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, detail


def assert_still_answers(client):
    response = client.post("/v1/tryon", files={"person": ("p.jpg", PERSON)}, data={"garment": "garment_tshirt"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"


# --- POST /cloth: the seed's contract -------------------------------------------------------

def test_cloth_answers_the_seed_contract_with_the_seeds_bmp(client, tiny_tryon):
    response = client.post("/cloth", json={"image_person": b64(PERSON), "image_cloth": b64(CLOTH)})
    assert response.status_code == 200
    body = response.json()
    expected = tiny_tryon.predict(PERSON, CLOTH, **SEED_FLAGS)
    assert body["status"] == ("ok" if expected.confidence >= 0.1 else "failure")
    bmp = base64.b64decode(body["output_image"])
    # The seed's bytes: cv2.imencode('.bmp') of the BGR image, 192x256, lossless.
    assert bmp[:2] == b"BM" and len(bmp) == 54 + 256 * 192 * 3
    assert bmp == encode(expected.image, ".bmp")
    assert decode(bmp).shape == (256, 192, 3)
    assert body["confidence"] == pytest.approx(expected.confidence)
    assert "total" in body["timings_ms"] and isinstance(body["reason"], str)


def test_cloth_takes_what_the_seeds_clients_send(client):
    # get.py: no Content-Type, extra fields; Android Base64.DEFAULT: line-wrapped base64.
    wrapped = base64.encodebytes(PERSON).decode()
    body = '{"uuid": "1.jpg", "format": "jpg", "image_person": "%s", "image_cloth": "%s"}' % (wrapped, b64(CLOTH))
    response = client.post("/cloth", content=body.encode(), headers={"content-type": ""})
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("ok", "failure")


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, ["not JSON", "image_person"]),
    (b"\xff\xfe garbage", 400, ["not JSON"]),
    (b"[1, 2]", 422, ["not an object"]),
    (json.dumps({"image_cloth": b64(CLOTH)}).encode(), 422, ["image_person is missing"]),
    (json.dumps({"image_person": 5, "image_cloth": b64(CLOTH)}).encode(), 422, ["image_person", "base64 string"]),
    (json.dumps({"image_person": "abc$", "image_cloth": b64(CLOTH)}).encode(), 422, ["not valid base64"]),
    (json.dumps({"image_person": "", "image_cloth": b64(CLOTH)}).encode(), 422, ["empty"]),
    (json.dumps({"image_person": b64(b"GIF89a" + bytes(40)), "image_cloth": b64(CLOTH)}).encode(), 415,
     ["person photo", "JPEG, PNG, BMP or WebP"]),
    (json.dumps({"image_person": b64(PERSON), "image_cloth": b64(png_claiming(60000, 60000))}).encode(), 413,
     ["garment photo", "60000x60000", "limit"]),
    (json.dumps({"image_person": b64(PERSON[:2000]), "image_cloth": b64(CLOTH)}).encode(), 422,
     ["corrupt or truncated"]),
])
def test_cloth_refuses_bad_input_with_a_reason(client, body, status, words):
    assert_refused(client.post("/cloth", content=body), status, *words)


def test_cloth_refuses_an_oversized_body_and_keeps_serving(client):
    too_big = json.dumps({"image_person": "A" * (3 * 2**20), "image_cloth": ""}).encode()
    assert_refused(client.post("/cloth", content=too_big), 413, "2,097,152 bytes", "2 MB")
    # Streamed without Content-Length: counted as it arrives.
    chunks = iter([b'{"image_person": "' + b"A" * 2**20] * 3)
    assert_refused(client.post("/cloth", content=chunks), 413, "over the limit")
    assert_still_answers(client)


def test_cloth_answers_only_post(client):
    assert client.get("/cloth").status_code == 405


# --- POST /v1/tryon -------------------------------------------------------------------------

def test_tryon_png_carries_confidence_and_timings_in_headers(client, tiny_tryon):
    response = client.post("/v1/tryon", files={"person": ("p.jpg", PERSON), "cloth": ("c.png", CLOTH)})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    expected = tiny_tryon.predict(PERSON, CLOTH)
    assert np.array_equal(decode(response.content), expected.image)
    assert float(response.headers["x-tryon-confidence"]) == pytest.approx(expected.confidence, abs=1e-6)
    assert response.headers["x-tryon-ok"] == json.dumps(expected.ok)
    assert response.headers["x-tryon-synthetic"] == "true"
    stages = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert "total" in stages and float(stages["total"]) > 0


def test_tryon_json_with_a_gallery_garment_and_flags(client, tiny_tryon):
    flags = dict(need_pre=False, need_bright=True, keep_back=True, need_dilate=True, check_dirty=False)
    form = {"garment": "red-shirt", "format": "json", **{k: str(v).lower() for k, v in flags.items()}}
    response = client.post("/v1/tryon", files={"person": ("p.jpg", PERSON)}, data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"confidence", "ok", "reason", "timings_ms", "image_png_base64", "synthetic"}
    garment = decode(client.get("/v1/garments/red-shirt.png").content)
    assert garment[128, 96].tolist() == pytest.approx([200, 0, 0], abs=3)  # the added JPEG
    expected = tiny_tryon.predict(PERSON, garment, **flags)
    assert np.array_equal(decode(base64.b64decode(body["image_png_base64"])), expected.image)
    assert body["synthetic"] is True and body["ok"] == (body["confidence"] >= 0.1)


@pytest.mark.parametrize("files, data, status, words", [
    ({}, {"garment": "garment_tshirt"}, 422, ["person: Field required"]),
    ({"person": ("p.jpg", PERSON)}, {}, 422, ["give a garment", "/v1/garments"]),
    ({"person": ("p.jpg", PERSON), "cloth": ("c.png", CLOTH)}, {"garment": "garment_tshirt"}, 422, ["not both"]),
    ({"person": ("p.jpg", PERSON)}, {"garment": "nope"}, 422, ["'nope'", "garment_tshirt"]),
    ({"person": ("p.jpg", PERSON)}, {"garment": "garment_tshirt", "need_pre": "maybe"}, 422, ["need_pre", "boolean"]),
    ({"person": ("p.jpg", PERSON)}, {"garment": "garment_tshirt", "format": "gif"}, 422, ["format", "'png' or 'json'"]),
    ({"person": ("p.gif", b"GIF89a" + bytes(40))}, {"garment": "garment_tshirt"}, 415, ["JPEG, PNG, BMP or WebP"]),
    ({"person": ("p.png", png_claiming(100000, 100000))}, {"garment": "garment_tshirt"}, 413, ["pixels", "limit"]),
    ({"person": ("p.png", PERSON[:3000])}, {"garment": "garment_tshirt"}, 422, ["corrupt or truncated"]),
    ({"person": ("p.png", encode(np.zeros((8, 8, 3), np.uint8)))}, {"garment": "garment_tshirt"}, 422, ["too small"]),
    ({"person": ("p.jpg", PERSON), "cloth": ("c.png", b"")}, {}, 422, ["garment photo", "empty"]),
])
def test_tryon_refuses_bad_input_with_a_reason(client, files, data, status, words):
    assert_refused(client.post("/v1/tryon", files=files, data=data), status, *words)


def test_tryon_refuses_what_is_not_a_form(client):
    assert_refused(client.post("/v1/tryon", json={"person": b64(PERSON)}), 422, "person: Field required")
    response = client.post("/v1/tryon", content=b"--x\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= response.status_code < 500 and isinstance(response.json()["detail"], str)
    big = {"person": ("p.jpg", bytes(3 * 2**20))}
    assert_refused(client.post("/v1/tryon", files=big, data={"garment": "garment_tshirt"}), 413, "over the limit")
    assert_still_answers(client)


# --- gallery, page, health, docs -----------------------------------------------------------

def test_gallery_lists_the_bundled_and_the_added_garments(client):
    garments = client.get("/v1/garments").json()["garments"]
    assert [g["id"] for g in garments] == ["garment_tshirt", "red-shirt"]
    for garment in garments:
        response = client.get(garment["url"])
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert decode(response.content).shape == (garment["height"], garment["width"], 3)
    assert_refused(client.get("/v1/garments/nope.png"), 404, "'nope'", "/v1/garments")


def test_web_page_loads_nothing_from_elsewhere(client):
    response = client.get("/web")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page = response.text + client.get("/web/static/web.js").text + client.get("/web/static/web.css").text
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert 'id="synthetic"' in response.text
    assert client.get("/", follow_redirects=False).headers["location"] == "/web"


def test_healthz_reports_models_providers_and_synthetic(client):
    health = client.get("/healthz").json()
    assert health["models_loaded"] is True and health["synthetic"] is True
    assert health["providers"] == ["CPUExecutionProvider"] and health["family"] == "grayxu"
    assert health["jppnet_graph"] == "jppnet.winograd.onnx"  # fp32 on the CPU


def test_openapi_documents_the_routes_and_the_seed_differences(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/cloth", "/v1/tryon", "/v1/garments", "/v1/garments/{garment_id}.png", "/healthz", "/web"} <= set(spec["paths"])
    cloth = spec["paths"]["/cloth"]["post"]
    assert "[60:580, 45:435]" in cloth["description"] and "BMP" in cloth["description"]
    assert "image_person" in json.dumps(cloth["requestBody"])


# --- overload --------------------------------------------------------------------------------

class HeldPredict:
    """The real pipeline behind a gate the test opens: holds the one slot busy on demand."""

    def __init__(self, tryon):
        self.tryon = tryon
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self.tryon, name)

    def predict(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(30)
        return self.tryon.predict(*args, **kwargs)


def test_beyond_the_queue_the_answer_is_503_with_retry_after(tiny_tryon):
    held = HeldPredict(tiny_tryon)
    with TestClient(create_app(held, max_concurrent=1, queue=0)) as client:
        first: dict = {}
        request = dict(files={"person": ("p.jpg", PERSON)}, data={"garment": "garment_tshirt"})
        worker = threading.Thread(target=lambda: first.update(response=client.post("/v1/tryon", **request)))
        worker.start()
        try:
            assert held.entered.wait(30)
            assert client.get("/healthz").json()["in_flight"] == 1  # the event loop still answers
            busy = client.post("/v1/tryon", **request)
            assert_refused(busy, 503, "busy", "retry")
            assert int(busy.headers["retry-after"]) >= 1
            assert_refused(client.post("/cloth", json={"image_person": b64(PERSON), "image_cloth": b64(CLOTH)}),
                           503, "busy")
        finally:
            held.release.set()
            worker.join(60)
        assert first["response"].status_code == 200
        assert np.array_equal(decode(first["response"].content), tiny_tryon.predict(PERSON, CLOTH).image)
        assert_still_answers(client)


# --- start-up ----------------------------------------------------------------------------------

def serve_command(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from tryon.runtime.cli import app; sys.exit(app())"
    return subprocess.run([sys.executable, "-c", code, "serve", "--port", "1", *args],
                          capture_output=True, text=True, timeout=120)


def test_start_fails_in_one_line_without_models(tmp_path):
    done = serve_command("--models", str(tmp_path / "none"))
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "manifest.json missing" in done.stderr


def test_start_fails_in_one_line_on_a_corrupt_model(tiny_models_dir, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for path in filter(Path.is_file, tiny_models_dir.iterdir()):
        (models / path.name).write_bytes(path.read_bytes())
    (models / "gmm.onnx").write_bytes(b"not a model")
    done = serve_command("--models", str(models))
    assert done.returncode == 5, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "cannot load model" in done.stderr
