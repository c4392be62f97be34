"""Request ids and the access log (issue 22): an X-Request-Id on every answer, one log line per
request with the route, status, time, id and key name, and never a person id in clear."""
import json
import logging
import re
import urllib.request
import warnings

import pytest
from serve_process import FAST, serve_process
from test_serve_api import PERSON
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.serve.auth import ApiKeys
from tryon.serve.operations import JsonLines, Operations

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

KEY = {"Authorization": "Bearer shop-key-0123456789"}


@pytest.fixture(scope="module")
def client(tiny_models_dir):
    app = create_app(TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False))
    with TestClient(Operations(app, ApiKeys.gather(["shop:shop-key-0123456789"])),
                    base_url="http://localhost") as client:
        yield client


def access_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "tryon.access"]


def test_a_clients_request_id_is_echoed_and_logged(client, caplog):
    caplog.set_level(logging.INFO, "tryon.access")
    response = client.get("/v1/garments", headers={**KEY, "X-Request-Id": "order-42/try-1"})
    assert response.headers["x-request-id"] == "order-42/try-1"
    [line] = access_lines(caplog)
    assert re.fullmatch(r"GET /v1/garments 200 [0-9.]+ms request_id=order-42/try-1 key=shop", line.getMessage())


@pytest.mark.parametrize("given", ["x" * 65, "two words", "caf\u00e9", ""])
def test_an_unusable_request_id_is_replaced(client, given):
    response = client.get("/healthz", headers={"X-Request-Id": given.encode()})
    assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"]), response.headers["x-request-id"]


def test_refusals_and_unknown_paths_carry_an_id_too(client, caplog):
    caplog.set_level(logging.INFO, "tryon.access")
    for response in (client.get("/v1/garments"), client.get("/nowhere", headers=KEY)):
        assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"])
    assert [line.getMessage().split()[:3] for line in access_lines(caplog)] == [
        ["GET", "/v1/garments", "401"], ["GET", "/nowhere", "404"]]
    assert access_lines(caplog)[0].getMessage().endswith("key=-")


def test_no_person_id_is_ever_logged(client, caplog):
    caplog.set_level(logging.DEBUG)
    created = client.post("/v1/persons", headers=KEY, files={"person": ("p.jpg", PERSON)})
    person_id = created.json()["person_id"]
    for path in (f"/v1/persons/{person_id}", f"/v1/persons/{person_id}/labels.png",
                 f"/v1/persons/{person_id}/nothing-here", f"/v1/persons/{person_id[:20]}", f"/elsewhere/{person_id}"):
        client.get(path, headers=KEY)
    client.get(f"/v1/persons/{person_id}")  # without a key: refused, and logged all the same
    client.delete(f"/v1/persons/{person_id}", headers=KEY)
    logged = "\n".join(record.getMessage() + json.dumps(getattr(record, "access", "")) for record in caplog.records
                       if record.name != "httpx")  # the test's client names the URLs it asks for
    assert len(access_lines(caplog)) == 8
    assert "/v1/persons/{person_id}/labels.png" in logged and "/v1/persons/{id}/nothing-here" in logged
    assert person_id[:16] not in logged and person_id[-16:] not in logged, logged


def test_json_lines_are_one_object_each(client, caplog):
    caplog.set_level(logging.INFO, "tryon.access")
    client.get("/v1/garments", headers={**KEY, "X-Request-Id": "abc"})
    logging.getLogger("tryon.serve").warning("a line of another logger")
    lines = [JsonLines().format(record) for record in caplog.records]
    access, other = map(json.loads, lines)
    assert access.keys() == {"time", "method", "route", "status", "ms", "request_id", "key"}
    assert [access[name] for name in ("route", "status", "request_id", "key")] == ["/v1/garments", 200, "abc", "shop"]
    assert other["message"] == "a line of another logger" and other["level"] == "warning"


def test_tryon_serve_logs_json_lines(tiny_models_dir, tmp_path):
    log = tmp_path / "serve.log"
    with serve_process(tiny_models_dir, log, "--no-cache", "--log-format", "json", *FAST) as server:
        request = urllib.request.Request(server.url + "/web", headers={"X-Request-Id": "from-the-test"})
        urllib.request.urlopen(request, timeout=10).close()
    lines = log.read_text().splitlines()
    logged = [json.loads(line) for line in lines if line.startswith("{")]  # each one JSON object
    assert [entry["route"] for entry in logged if entry.get("request_id") == "from-the-test"] == ["/web"]
    assert any(entry.get("logger", "").startswith("uvicorn") for entry in logged)  # uvicorn's lines too
    assert not [line for line in lines if line.startswith(("INFO", "WARNING"))]
