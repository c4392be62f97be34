"""API keys (issue 22): every route behind Authorization: Bearer KEY but health, readiness, the
page and the docs; one refusal for a missing and a wrong key; no open start on the network."""
import warnings

import pytest
from fastapi import Request
from test_serve_api import assert_one_line, serve_command
from tryon.errors import InputError
from tryon.examples import EXAMPLE_PERSON
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.serve.auth import ApiKeys
from tryon.serve.operations import Operations

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"


@pytest.fixture(scope="module")
def client(tiny_models_dir):
    app = create_app(TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False))

    @app.get("/whoami")
    def whoami(request: Request):  # what a route sees of the key
        return request.state.key_name

    with TestClient(Operations(app, ApiKeys.gather([f"alice:{ALICE}", BOB])), base_url="http://localhost") as client:
        yield client


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_a_missing_or_wrong_key_gets_one_401_that_tells_nothing(client):
    refusals = [client.get("/v1/garments", headers=headers) for headers in
                ({}, bearer("alice-key-0123456788"), bearer(ALICE[:-1]), {"Authorization": f"Basic {ALICE}"},
                 bearer(f"{ALICE}x"))]
    assert {response.status_code for response in refusals} == {401}
    assert len({response.content for response in refusals}) == 1  # a near-miss reads as no key at all
    assert refusals[0].headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in refusals[0].json()["detail"]


def test_either_key_passes_and_routes_see_its_name_never_the_key(client):
    assert client.get("/v1/garments", headers=bearer(ALICE)).status_code == 200
    assert client.get("/whoami", headers=bearer(ALICE)).json() == "alice"
    assert client.get("/whoami", headers=bearer(BOB)).json() == "key-2"
    assert client.post("/v1/persons", headers=bearer("nobody")).status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/web", "/", "/web/static/web.js", "/docs", "/openapi.json"])
def test_health_readiness_the_page_and_the_docs_need_no_key(client, path):
    assert client.get(path, follow_redirects=False).status_code in (200, 307), path


def test_metrics_need_a_key(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(BOB)).status_code == 200


def test_keys_come_from_options_a_file_and_the_environment(tmp_path):
    file = tmp_path / "keys"
    file.write_text("# the shop\nshop:shop-key-1\n\n  bare-key-2  \n")
    keys = ApiKeys.gather(["cli-key-0"], file, "ci:ci-key-3, env-key-4")
    assert [name for name, _ in keys.keys] == ["key-1", "shop", "key-3", "ci", "key-5"]
    assert keys.name_of(b"Bearer bare-key-2") == "key-3" and keys.name_of(b"bearer env-key-4") == "key-5"
    assert keys.name_of(None) is None and not ApiKeys.gather([], None, "")


@pytest.mark.parametrize("given, words", [
    (["a:has space"], ["--api-key #1", "printable ASCII"]),
    (["dup:one-key", "dup:other-key"], ["--api-key #2", "given twice"]),
    (["one:same-key", "two:same-key"], ["given twice"]),
    (["name:"], ["printable ASCII"]),
])
def test_bad_keys_are_refused_without_echoing_them(given, words):
    with pytest.raises(InputError) as refused:
        ApiKeys.gather(given)
    for word in words:
        assert word in str(refused.value)
    assert not any(entry.partition(":")[2] in str(refused.value) for entry in given if entry.partition(":")[2])


def test_no_keys_on_a_network_address_refuses_to_start(tmp_path, monkeypatch):
    # The models folder is missing: a refusal after loading would say exit 3 instead.
    assert_one_line(serve_command("--models", str(tmp_path / "none"), "--host", "0.0.0.0"), 4,
                    "--host 0.0.0.0 without API keys", "--no-auth")
    assert_one_line(serve_command("--models", str(tmp_path / "none"), "--host", "0.0.0.0", "--no-auth"), 3)
    assert_one_line(serve_command("--models", str(tmp_path / "none"), "--host", "0.0.0.0", "--api-keys-file",
                                  str(tmp_path / "absent")), 4, "--api-keys-file", "cannot be read")
    assert_one_line(serve_command("--models", str(tmp_path / "none"), "--engine", "ray", "--api-key", "some-key"), 4,
                    "--engine ray needs --cache redis://")  # keys pass on Ray: on to the next check
    monkeypatch.setenv("TRYON_API_KEYS", "ci:ci-key-0123")  # keys from the environment: on to the models
    assert_one_line(serve_command("--models", str(tmp_path / "none"), "--host", "0.0.0.0"), 3)


def test_persons_belong_to_the_key_that_parsed_them(client):
    """The same photo under two keys is two persons: neither key can read, dress or delete the
    other's, and `cached: true` is only ever told to the key that uploaded the photo."""
    photo = {"person": ("p.png", EXAMPLE_PERSON.read_bytes())}
    flags = {"need_pre": "false"}
    alice = client.post("/v1/persons", files=photo, data=flags, headers=bearer(ALICE))
    assert alice.status_code in (200, 201), alice.text
    bob = client.post("/v1/persons", files=photo, data=flags, headers=bearer(BOB))
    assert bob.status_code == 201 and bob.json()["cached"] is False  # nothing told of alice's upload
    alice_id, bob_id = alice.json()["person_id"], bob.json()["person_id"]
    assert alice_id != bob_id
    again = client.post("/v1/persons", files=photo, data=flags, headers=bearer(ALICE))
    assert again.json()["person_id"] == alice_id and again.json()["cached"] is True
    for method, path in (("GET", ""), ("GET", "/labels.png"), ("DELETE", "")):
        assert client.request(method, f"/v1/persons/{alice_id}{path}", headers=bearer(BOB)).status_code == 404
    tryon = client.post("/v1/tryon", data={"person_id": alice_id, "garment": "garment_tshirt"}, headers=bearer(BOB))
    assert tryon.status_code == 404, tryon.text
    assert client.get(f"/v1/persons/{alice_id}", headers=bearer(ALICE)).status_code == 200  # bob deleted nothing
    assert client.delete(f"/v1/persons/{bob_id}", headers=bearer(BOB)).status_code == 204
