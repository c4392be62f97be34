"""GET /metrics and GET /readyz (issue 22): the series read back with prometheus-client's own
parser, counting the requests made; readiness against a person store that fails."""
import warnings

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_serve_api import CLOTH, PERSON
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.serve.auth import ApiKeys
from tryon.serve.operations import Operations
from tryon.store import MemoryStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

KEY = {"Authorization": "Bearer ops-key-0123456789"}


@pytest.fixture(scope="module")
def tiny_tryon(tiny_models_dir):
    return TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)


@pytest.fixture
def client(tiny_tryon):
    """A new app each test: its series start from nothing."""
    app = Operations(create_app(tiny_tryon), ApiKeys.gather(["ops:ops-key-0123456789"]))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics", headers=KEY)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def value(samples, name: str, **labels) -> float:
    return sum(sample.value for sample in samples if sample.name == name and labels.items() <= sample.labels.items())


def test_requests_are_counted_by_route_template_and_status(client):
    for _ in range(2):
        assert client.get("/v1/garments", headers=KEY).status_code == 200
    assert client.get("/v1/persons/" + "ab" * 32, headers=KEY).status_code == 404
    assert client.get("/v1/garments").status_code == 401
    assert client.request("BREW", "/v1/garments").status_code == 401  # counted as method "other"
    tryon = client.post("/v1/tryon", headers=KEY, files={"person": ("p.jpg", PERSON), "cloth": ("c.jpg", CLOTH)})
    assert tryon.status_code == 200 and "server-timing" in tryon.headers
    series = scrape(client)
    requests = series["tryon_requests"]
    assert value(requests, "tryon_requests_total", route="/v1/garments", status="200") == 2
    assert value(requests, "tryon_requests_total", route="/v1/garments", status="401") == 2
    assert value(requests, "tryon_requests_total", method="other") == 1
    assert value(requests, "tryon_requests_total", route="/v1/persons/{person_id}", method="GET", status="404") == 1
    assert value(requests, "tryon_requests_total") == 6  # the scrape itself is counted once it is answered
    assert value(series["tryon_request_seconds"], "tryon_request_seconds_count", route="/v1/garments") == 4
    stages = {sample.labels["stage"] for sample in series["tryon_stage_seconds"]}
    timed = {part.split(";")[0].strip() for part in tryon.headers["server-timing"].split(",")}
    assert timed <= stages and {"decode", "total"} <= stages
    assert value(series["tryon_requests_in_flight"], "tryon_requests_in_flight") == 1  # the scrape
    assert value(series["tryon_store_persons"], "tryon_store_persons") == 1
    [info] = series["tryon_models_info"]
    assert info.labels["synthetic"] == "true" and info.labels["providers"] == "CPUExecutionProvider"
    assert info.labels["graph"] == "jppnet.winograd.onnx" and info.labels["precision"] == "fp32"


def test_the_person_stores_hits_and_misses_are_counters(tiny_tryon, monkeypatch):
    monkeypatch.setattr(tiny_tryon, "store", MemoryStore())  # nothing parsed yet; put back after
    app = Operations(create_app(tiny_tryon), ApiKeys.gather(["ops:ops-key-0123456789"]))
    with TestClient(app, base_url="http://localhost") as client:
        for status in (201, 200):  # parsed now (a miss), then found in the store (a hit)
            assert client.post("/v1/persons", headers=KEY, files={"person": ("p.jpg", PERSON)}).status_code == status
        series = scrape(client)
    for name, count in (("hits", 1), ("misses", 1), ("evictions", 0)):
        assert series[f"tryon_store_{name}"][0].name == f"tryon_store_{name}_total"
        assert value(series[f"tryon_store_{name}"], f"tryon_store_{name}_total") == count


def test_each_app_counts_its_own(client, tiny_tryon):
    client.get("/v1/garments", headers=KEY)
    other = Operations(create_app(tiny_tryon), ApiKeys.gather(["ops:ops-key-0123456789"]))
    with TestClient(other, base_url="http://localhost") as fresh:
        assert value(scrape(fresh)["tryon_requests"], "tryon_requests_total") == 0
    assert value(scrape(client)["tryon_requests"], "tryon_requests_total", route="/v1/garments") == 1


def test_ready_until_the_store_fails_and_the_503_is_counted(client, monkeypatch):
    assert client.get("/readyz").json() == {"status": "ready"}

    def unreachable():
        raise ConnectionError("redis://secret-host:6379 refused")

    monkeypatch.setattr(client.app.app.state.service.store, "info", unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503 and "person store" in response.json()["detail"]
    assert "secret-host" not in response.text
    series = scrape(client)
    assert value(series["tryon_requests"], "tryon_requests_total", route="/readyz", status="503") == 1
    assert "tryon_store_persons" not in series and "tryon_store_misses" in series  # counted here, not asked
