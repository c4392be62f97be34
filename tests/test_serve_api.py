"""The HTTP service in-process: the one-call routes, every refusal, Host and Origin, /docs,
the overload path, and the start-up failures.

Responses come from the real pipeline on the tiny exported models; only the overload test
holds dress, to keep the single inference slot busy while a second request arrives.
"""
import asyncio
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from tryon.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON
from tryon.images import decode, encode
from tryon.pipeline import TryOn
from tryon.serve import create_app, limits
from tryon.serve.limits import Limits
from tryon.serve.seed_route import SEED_FLAGS
from tryon.store import MemoryStore

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
    app = create_app(tiny_tryon, gallery=[gallery], limits=Limits(max_body_bytes=2 * 2**20))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def unseen_photo() -> bytes:
    """The example photo with one pixel changed: a photo no store has parsed yet."""
    unseen_photo.count = getattr(unseen_photo, "count", 0) + 1
    rgb = decode(PERSON)
    rgb[0, 0] = (unseen_photo.count % 256, unseen_photo.count // 256, 7)
    return encode(rgb, ".png")


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
    assert response.headers["x-tryon-parse-quality"] == "full"
    stages = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert "total" in stages and float(stages["total"]) > 0


def test_tryon_json_with_a_gallery_garment_and_flags(client, tiny_tryon):
    flags = dict(need_pre=False, need_bright=True, keep_back=True, need_dilate=True, check_dirty=False)
    form = {"garment": "red-shirt", "format": "json", **{k: str(v).lower() for k, v in flags.items()}}
    response = client.post("/v1/tryon", files={"person": ("p.jpg", PERSON)}, data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"confidence", "ok", "reason", "timings_ms", "image_png_base64", "synthetic", "person_id",
                         "parse_quality"}
    assert body["parse_quality"] == "full"  # issue 21: a photo sent with the try-on gets the exact parse
    assert body["person_id"] == tiny_tryon.parse(PERSON, need_pre=False, need_bright=True).id
    garment = decode(client.get("/v1/garments/red-shirt.png").content)
    assert garment[128, 96].tolist() == pytest.approx([200, 0, 0], abs=3)  # the added JPEG
    expected = tiny_tryon.predict(PERSON, garment, **flags)
    assert np.array_equal(decode(base64.b64decode(body["image_png_base64"])), expected.image)
    assert body["synthetic"] is True and body["ok"] == (body["confidence"] >= 0.1)


@pytest.mark.parametrize("files, data, status, words", [
    ({}, {"garment": "garment_tshirt"}, 422, ["give a person", "person_id", "POST /v1/persons"]),
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
    assert_refused(client.post("/v1/tryon", json={"person": b64(PERSON)}), 422, "give a person")
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

class HeldTryOn(TryOn):
    """The real pipeline whose dress waits for the test: holds the one slot busy on demand."""

    def __init__(self, tryon):
        super().__init__(tryon.parse_stage, tryon.cpvton, tryon.models, tryon.jppnet_graph, MemoryStore())
        self.entered = threading.Event()
        self.release = threading.Event()

    def dress(self, *args, **kwargs):
        self.entered.set()
        assert self.release.wait(30)
        return super().dress(*args, **kwargs)


def test_beyond_the_queue_the_answer_is_503_with_retry_after(tiny_tryon):
    held = HeldTryOn(tiny_tryon)
    with TestClient(create_app(held, max_concurrent=1, queue=0), base_url="http://localhost") as client:
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
            assert_refused(client.post("/v1/persons", files={"person": ("p.jpg", PERSON)}), 503, "busy")
        finally:
            held.release.set()
            worker.join(60)
        assert first["response"].status_code == 200
        assert np.array_equal(decode(first["response"].content), tiny_tryon.predict(PERSON, CLOTH).image)
        assert_still_answers(client)


# --- hostile bodies (issue 12: items 4, 8) -----------------------------------------------------

@pytest.mark.parametrize("body, words", [
    (b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
    (b'{"image_person": ' + b"9" * 5000 + b"}", ["4300 digits"]),
    (b'{"image_person": 1e999999}', ["image_person must be a base64 string"]),
])
def test_cloth_refuses_json_that_python_cannot_hold(client, body, words):
    response = client.post("/cloth", content=body)
    assert 400 <= response.status_code < 500, response.text
    assert_refused(response, response.status_code, *words)


def test_a_jpeg_without_a_size_is_refused_and_headers_are_read_off_the_event_loop(client, monkeypatch):
    on_loop = []
    check_header = limits.check_header

    def watched(*args):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)  # called from a coroutine: the event loop thread
        except RuntimeError:
            on_loop.append(False)
        return check_header(*args)

    monkeypatch.setattr(limits, "check_header", watched)
    headerless = b"\xff\xd8\xff\xe0" + bytes(3 * 2**19)  # 1.5 MB, no frame header: no size to check
    response = client.post("/v1/tryon", files={"person": ("p.jpg", headerless)}, data={"garment": "garment_tshirt"})
    assert_refused(response, 422, "person photo", "no frame header")
    assert on_loop == [False]


# --- Host and Origin (issue 12: item 10) -------------------------------------------------------

def counting_jppnet(tryon):
    from test_parse_dress import CountingSession

    counting = CountingSession(tryon.parse_stage.session)
    tryon.parse_stage.session = counting
    return counting


@pytest.mark.parametrize("headers, status, words", [
    ({"host": "evil.example"}, 400, ["'evil.example'", "--allowed-host"]),
    ({"host": "rebound.example:8000"}, 400, ["not a name this server answers to"]),
    ({"origin": "http://evil.example", "content-type": "text/plain"}, 403, ["http://evil.example",
                                                                           "--allowed-origin"]),
    ({"origin": "null"}, 403, ["from this server"]),
])
def test_other_hosts_and_other_sites_pages_are_refused_before_any_work(client, tiny_tryon, headers, status, words):
    counting = counting_jppnet(tiny_tryon)
    try:
        body = json.dumps({"image_person": b64(unseen_photo()), "image_cloth": b64(CLOTH)})
        assert_refused(client.post("/cloth", content=body, headers=headers), status, *words)
    finally:
        tiny_tryon.parse_stage.session = counting.session
    assert counting.runs == 0


@pytest.mark.parametrize("headers", [
    {"host": "127.0.0.1:8000"}, {"host": "[::1]:8000"}, {"host": "localhost:8000", "origin": "http://localhost:8000"},
])
def test_ip_addresses_localhost_and_the_servers_own_page_pass(client, headers):
    assert client.get("/healthz", headers=headers).status_code == 200


def test_an_allowed_origin_gets_cors_and_an_allowed_host_passes(tiny_tryon):
    app = create_app(tiny_tryon, allowed_hosts=("localhost", "tryon.example"), allowed_origins=("https://shop.example",))
    with TestClient(app, base_url="http://tryon.example") as client:
        preflight = client.options("/v1/tryon", headers={"origin": "https://shop.example",
                                                         "access-control-request-method": "POST"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        response = client.get("/v1/garments", headers={"origin": "https://shop.example"})
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "https://shop.example"
        assert_refused(client.get("/v1/garments", headers={"origin": "https://other.example"}), 403, "other.example")


# --- gallery, page, health, docs -------------------------------------------------------------

def test_docs_load_nothing_from_elsewhere(client):
    page = client.get("/docs")
    assert page.status_code == 200
    references = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert len(references) >= 4, page.text
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        assert client.get(reference).status_code == 200, reference
    assert "http://" not in page.text and "https://" not in page.text
    redoc = client.get("/redoc").text
    assert "https://" not in redoc and "fonts.googleapis" not in redoc


def test_openapi_declares_every_refusal_as_a_detail_string(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["schemas"]["Problem"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    for path in ("/cloth", "/v1/tryon", "/v1/persons", "/v1/persons/{person_id}/tryon"):
        assert {"400", "403", "408", "413", "415", "422", "503"} <= set(spec["paths"][path]["post"]["responses"]), path


# --- start-up (issue 12: items 12, 13, 14) ---------------------------------------------------------

def serve_command(*args: str, port: int | None = None) -> subprocess.CompletedProcess:
    from serve_process import free_port

    code = "import sys; from tryon.cli import app; sys.exit(app())"
    return subprocess.run([sys.executable, "-c", code, "serve", "--port", str(port or free_port()), "--no-cache", *args],
                          capture_output=True, text=True, timeout=120)


def assert_one_line(done: subprocess.CompletedProcess, code: int, *words: str):
    assert done.returncode == code, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def copied_models(tiny_models_dir: Path, folder: Path) -> Path:
    folder.mkdir()
    for path in filter(Path.is_file, tiny_models_dir.iterdir()):
        shutil.copy2(path, folder / path.name)
    return folder


def test_start_fails_in_one_line_without_models(tmp_path):
    assert_one_line(serve_command("--models", str(tmp_path / "none")), 3, "manifest.json missing")


def test_start_fails_in_one_line_on_a_corrupt_model(tiny_models_dir, tmp_path):
    models = copied_models(tiny_models_dir, tmp_path / "models")
    (models / "gmm_garment.onnx").write_bytes(b"not a model")  # a graph the CPU provider runs
    assert_one_line(serve_command("--models", str(models)), 3, "gmm_garment.onnx", "manifest.json recorded",
                    "tryon export")


def test_start_fails_in_one_line_on_swapped_models(tiny_models_dir, tmp_path):
    models = copied_models(tiny_models_dir, tmp_path / "models")
    os.rename(models / "gmm_garment.onnx", models / "swap")  # two graphs the CPU provider runs
    os.rename(models / "tom.winograd.onnx", models / "gmm_garment.onnx")
    os.rename(models / "swap", models / "tom.winograd.onnx")
    assert_one_line(serve_command("--models", str(models)), 3, "manifest.json recorded", "swapped")


@pytest.mark.parametrize("manifest", ['{"models": []}', '[1, 2]', '{"models": {"gmm": "gmm.onnx"}}'])
def test_start_fails_in_one_line_on_a_manifest_of_the_wrong_structure(tmp_path, manifest):
    (tmp_path / "manifest.json").write_text(manifest)
    assert_one_line(serve_command("--models", str(tmp_path)), 3, "not a tryon manifest")


@pytest.mark.parametrize("option, words", [
    (["--port", "70000"], ["--port 70000", "1-65535"]),
    (["--host", "no such host.invalid"], ["--host"]),
    (["--allowed-origin", "evil.example"], ["--allowed-origin", "scheme://host"]),
    (["--gallery", "/nonexistent"], ["--gallery", "not a folder"]),
])
def test_bad_options_fail_in_one_line_before_the_models_load(tmp_path, option, words):
    # The models folder is missing too: a check made after loading would answer exit 3 instead.
    done = serve_command("--models", str(tmp_path / "none"), *option)
    assert_one_line(done, 4, *words)


def test_a_busy_port_has_its_own_exit_code_and_says_so(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = serve_command("--models", str(tmp_path / "none"), port=busy.getsockname()[1])
    assert_one_line(done, 8, "in use", "--port")
