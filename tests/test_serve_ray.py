"""tryon serve --engine ray: the service on Ray Serve, over a real redis-server.

One Serve app for the module on a local 2-CPU Ray cluster: two Parse and two Dress replicas of
half a CPU each, a queue of one, the tiny models at one scale without the mirror, two API keys
(the client sends alice's unless a test says otherwise). Answers are
compared with the local engine's; which replica answered is read from Serve's own per-replica
logs. The command-line refusals run first, before the module's cluster starts.
"""
import asyncio
import base64
import concurrent.futures
import dataclasses
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'tryon-onnx[ray]'")

import ray  # noqa: E402
from serve_process import FAST, free_port  # noqa: E402
from test_serve_api import assert_one_line  # noqa: E402
from test_serve_persons import photo  # noqa: E402
from tryon.errors import InputError  # noqa: E402
from tryon.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON  # noqa: E402
from tryon.images import decode  # noqa: E402
from tryon.models.graphs import model_hashes  # noqa: E402
from tryon.options import ParseOptions, split_flags  # noqa: E402
from tryon.pipeline import PipelineSettings, TryOn  # noqa: E402
from tryon.serve.auth import ApiKeys  # noqa: E402
from tryon.serve.ray_engine import APP, DressReplica, ParseReplica, ServeArgs, running  # noqa: E402
from tryon.serve.seed_route import SEED_FLAGS  # noqa: E402
from tryon.store import StoreSettings, open_store  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import httpx

PERSON = EXAMPLE_PERSON.read_bytes()
CLOTH = EXAMPLE_GARMENT.read_bytes()
QUEUE = 1
ALICE, BOB = "alice-ray-key-0123", "bob-ray-key-4567"
KEYS = ApiKeys.gather([f"alice:{ALICE}", f"bob:{BOB}"])


# -- the command line: refusals before any Ray work, and a deployment that cannot start ----------

def serve_command(*args: str, port: int | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from tryon.cli import app; sys.exit(app())"
    return subprocess.run([sys.executable, "-c", code, "serve", "--port", str(port or free_port()), *args],
                          capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("option, words", [
    (["--no-cache"], ["--engine ray needs --cache redis://", "got memory", "404 for persons parsed elsewhere"]),
    (["--cache", "redis://127.0.0.1:1/0", "--queue", "0"], ["--queue (Serve queues one call at least)"]),
    (["--cache", "redis://127.0.0.1:1/0", "--parse-replicas", "3-1"], ["MIN <= MAX", "parse 3-1"]),
    (["--cache", "redis://127.0.0.1:1/0", "--parse-replicas", "two"], ["--parse-replicas 'two'", "MIN-MAX"]),
    (["--cache", "redis://127.0.0.1:1/0", "--engine", "triton"], ["--engine 'triton'", "local or ray"]),
    (["--cache", "redis://127.0.0.1:1/0", "--host", "0.0.0.0"], ["--host 0.0.0.0 without API keys", "--no-auth"]),
    (["--no-cache", "--api-key", "k-0123", "--log-format", "json"], ["--engine ray needs --cache"]),  # keys pass
])
def test_ray_options_are_refused_in_one_line_before_ray_starts(tmp_path, option, words):
    done = serve_command("--models", str(tmp_path / "none"), "--engine", "ray", *option)
    assert_one_line(done, 4, *words)


def test_a_busy_port_is_refused_before_ray_starts(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = serve_command("--models", str(tmp_path / "none"), "--engine", "ray", "--cache", "redis://127.0.0.1:1/0",
                             port=busy.getsockname()[1])
    assert_one_line(done, 8, "in use")


def test_a_deployment_that_cannot_start_ends_the_command_in_one_line(tiny_models_dir, redis_server):
    """The Parse replicas find no int8 JPP-Net on their node: Serve's traceback stays in its logs."""
    done = serve_command("--models", str(tiny_models_dir), *FAST, "--provider", "cpu", "--engine", "ray",
                         "--cache", redis_server.url, "--precision", "int8")
    assert_one_line(done, 3, "on a Ray replica:", "has no int8 JPP-Net: run `tryon quantize")
    assert "Traceback" not in done.stdout


# -- the service on Serve ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local(tiny_models_dir):
    """The local engine on the same models and settings: what Serve's answers must equal."""
    return TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)


@pytest.fixture(scope="module")
def args(tiny_models_dir, redis_server):
    settings = PipelineSettings(str(tiny_models_dir), "cpu", scales=(1.0,), mirror=False,
                                store=StoreSettings(redis_server.url))
    return ServeArgs(settings, parse_replicas=(2, 2), dress_replicas=2, cpus_per_replica=0.5, queue=QUEUE)


@pytest.fixture(scope="module")
def service(args, redis_server):
    redis_server.flush()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        with running(args, "127.0.0.1", port, start_timeout_s=240, keys=KEYS):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {ALICE}"}) as client:
                yield client
    finally:
        ray.shutdown()


def replica_logs(deployment: str) -> dict[str, str]:
    """Serve's log of each replica of `deployment`, by replica id."""
    folder = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    return {log.stem.rsplit("_", 1)[1]: log.read_text() for log in folder.glob(f"replica_{APP}_{deployment}_*.log")}


def replica_calls(deployment: str, method: str) -> dict[str, int]:
    """Calls of `method` each replica of `deployment` answered, from Serve's per-replica logs."""
    return {replica: text.count(f"CALL {method} OK") for replica, text in replica_logs(deployment).items()}


def post_person(service, data: bytes, headers=None, **flags):
    return service.post("/v1/persons", files={"person": ("p.png", data)}, headers=headers,
                        data={k: str(v).lower() for k, v in flags.items()})


def test_healthz_reports_the_replicas_pipelines_and_the_redis_store(service):
    health = service.get("/healthz").json()
    assert health["store"]["kind"] == "redis" and health["providers"] == ["CPUExecutionProvider"]
    assert health["jppnet_graph"] == "jppnet.winograd.onnx" and health["synthetic"] is True
    assert (health["max_concurrent"], health["queue"]) == (1, QUEUE)
    assert health["status"] == "ok" and health["deployments"]["Dress"] == {
        "status": "HEALTHY", "running": 2, "replicas": {"RUNNING": 2}, "message": ""}
    assert service.get("/readyz", headers={"Authorization": ""}).json() == {"status": "ready"}  # open, as locally


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_persons_belong_to_the_key_that_parsed_them_across_replicas(service, local):
    """Two keys on one Serve app: no key, no answer; the same photo is two persons, neither key
    reads or dresses the other's, and `cached` is told only to the key that uploaded it."""
    assert post_person(service, photo(11), headers={"Authorization": ""}).status_code == 401
    assert service.get("/metrics", headers=bearer("not-a-key")).status_code == 401
    alice = post_person(service, photo(11))
    bob = post_person(service, photo(11), headers=bearer(BOB))
    assert (alice.status_code, bob.status_code, bob.json()["cached"]) == (201, 201, False), (alice.text, bob.text)
    alice_id, bob_id = alice.json()["person_id"], bob.json()["person_id"]
    assert alice_id == local.parse(photo(11), ParseOptions(owner=KEYS.owner("alice"))).id != bob_id
    assert service.get(f"/v1/persons/{alice_id}", headers=bearer(BOB)).status_code == 404
    assert service.post("/v1/tryon", data={"person_id": alice_id, "garment": "garment_tshirt"},
                        headers=bearer(BOB)).status_code == 404
    again = post_person(service, photo(11))
    assert again.json()["person_id"] == alice_id and again.json()["cached"] is True


def ingress_lines(words: str) -> list[str]:
    """The Ingress's log lines holding `words`, once there are some (the line is written as the answer leaves)."""
    deadline = time.monotonic() + 10
    while not (lines := [line for text in replica_logs("Ingress").values() for line in text.splitlines()
                         if words in line]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return lines


def test_a_clients_request_id_is_answered_and_reaches_the_ingress_access_log(service):
    answer = service.get("/v1/garments", headers={"X-Request-Id": "shop-order-4711"})
    assert answer.status_code == 200 and answer.headers.get_list("x-request-id") == ["shop-order-4711"]
    assert len(service.get("/v1/garments").headers.get_list("x-request-id")) == 1  # one the proxy gave
    [line] = ingress_lines("request_id=shop-order-4711")
    assert "GET /v1/garments 200" in line and "key=alice" in line


@pytest.mark.parametrize("sent, answered, logged", [
    ([("X-Request-Id", "x" * 65)], "x" * 65, "x" * 65),
    ([("X-Request-Id", "order 42 key=bob")], "order 42 key=bob", '"order 42 key=bob"'),
    ([("X-Request-Id", "café\t\"x".encode())], "café\t\"x", '"caf\\u00e9\\t\\"x"'),
    ([("X-Request-Id", "first one"), ("X-Request-Id", "second")], "first one", '"first one"'),
    ([], None, None),
], ids=["too-long", "spaces", "tab-quote-utf8", "two", "none"])
def test_the_access_log_holds_the_request_id_the_client_received(service, sent, answered, logged):
    """Serve's proxy answers the client's id, whatever it is (the first, if several), or one it
    made; the Ingress logs that one, quoted as a JSON string when it holds more than printable
    ASCII without quotes, so that no id breaks or forges a line. (Other control characters are
    refused by the proxy's HTTP parser, an id not in UTF-8 with a 500 and no id: neither reaches
    the Ingress.)"""
    answer = service.get("/v1/garments", headers=sent)
    [received] = answer.headers.get_list("x-request-id")
    assert received == (answered or received)
    expected = logged or received
    [line] = ingress_lines(f"request_id={expected} key=")
    assert re.search(r" -- GET /v1/garments 200 [0-9.]+ms request_id=(.*) key=alice$", line)[1] == expected, line


def test_a_path_with_a_line_break_stays_on_its_access_line(service):
    answer = service.get("/nowhere%0AGET%20/v1/garments%20200", headers={"X-Request-Id": "forged-path-1"})
    assert answer.status_code == 404
    [line] = ingress_lines("request_id=forged-path-1 ")
    assert ' -- GET "/nowhere\\nGET /v1/garments 200" 404 ' in line, line


def scrape(service) -> dict[str, list]:
    answer = service.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {family.name: family.samples for family in text_string_to_metric_families(answer.text)}


def test_metrics_count_the_requests_the_ingress_answered(service):
    def answered(series, **labels) -> float:
        return sum(s.value for s in series["tryon_requests"] if s.name == "tryon_requests_total"
                   and labels.items() <= s.labels.items())

    before = scrape(service)
    for _ in range(3):
        service.get("/v1/garments")
    service.get("/v1/garments", headers={"Authorization": ""})
    after = scrape(service)
    assert answered(after, route="/v1/garments", status="200") - answered(before, route="/v1/garments",
                                                                          status="200") == 3
    assert answered(after, route="/v1/garments", status="401") - answered(before, route="/v1/garments",
                                                                          status="401") == 1
    assert answered(after) - answered(before) == 5  # the first scrape is counted once answered
    [info] = after["tryon_models_info"]
    assert info.labels["synthetic"] == "true" and after["tryon_store_persons"][0].value >= 1


def test_metrics_count_the_store_lookups_of_the_parse_replicas(service):
    """The same photo parsed twice: a Parse replica misses, then one finds it (the Ingress looks
    nothing up for a POST /v1/persons); each replica's counts come back with its answers."""
    def counted(series, name: str) -> float:
        return series[f"tryon_store_{name}"][0].value

    before = scrape(service)
    assert [post_person(service, photo(12)).status_code for _ in range(2)] == [201, 200]
    after = scrape(service)
    assert [counted(after, name) - counted(before, name) for name in ("hits", "misses")] == [1, 1]


def test_a_person_parsed_on_serve_is_dressed_by_id_as_the_local_engine_dresses_it(service, local, redis_server):
    created = post_person(service, photo(1), need_pre=False)
    assert created.status_code == 201 and created.json()["cached"] is False, created.text
    person_id = created.json()["person_id"]
    # the same content hash, under alice's key
    assert person_id == local.parse(photo(1), ParseOptions(need_pre=False, owner=KEYS.owner("alice"))).id
    assert open_store(redis_server.url).get(person_id) is not None  # a Parse replica stored it in Redis
    assert service.get(f"/v1/persons/{person_id}").json()["options"]["need_pre"] is False  # the Ingress reads it
    dressed = service.post("/v1/tryon", data={"person_id": person_id}, files={"cloth": ("c.jpg", CLOTH)})
    assert dressed.status_code == 200 and dressed.headers["x-tryon-person-id"] == person_id, dressed.text
    expected = local.dress(local.parse(photo(1), need_pre=False), CLOTH)[0]
    assert np.array_equal(decode(dressed.content), expected.image)
    assert "cpvton.gmm;dur=" in dressed.headers["server-timing"]


def test_two_parse_and_two_dress_replicas_share_one_store(service, local):
    """The same photo sent again is found in Redis whichever Parse replica takes it; persons
    parsed there are dressed by both Dress replicas to the local engine's bytes."""
    parses_before = replica_calls("Parse", "parse")
    answers = [post_person(service, photo(2)) for _ in range(12)]
    assert [a.status_code for a in answers] == [201] + [200] * 11, [a.text for a in answers]
    assert len({a.json()["person_id"] for a in answers}) == 1
    parses = replica_calls("Parse", "parse")
    answered = {replica for replica in parses if parses[replica] > parses_before.get(replica, 0)}
    assert len(parses) == 2 and len(answered) == 2, parses  # both replicas, one JPP-Net run
    person_id = answers[0].json()["person_id"]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        dressed = list(pool.map(lambda _: service.post("/v1/tryon", data={"person_id": person_id,
                                                                            "garment": "garment_tshirt"}), range(8)))
    assert [d.status_code for d in dressed] == [200] * 8, [d.text for d in dressed]
    # GMM/TOM over one garment or over a batch differ in float rounding (1 level on 1% of values):
    # each answer is the local engine's for a batch of one or of several.
    parsed, garment = local.parse(photo(2)), decode(service.get("/v1/garments/garment_tshirt.png").content)
    alone, batched = local.dress(parsed, garment)[0].image, local.dress(parsed, [garment] * 2)[0].image
    assert all(np.array_equal(decode(d.content), alone) or np.array_equal(decode(d.content), batched)
               for d in dressed)
    dresses = replica_calls("Dress", "dress")
    assert len(dresses) == 2 and all(count > 0 for count in dresses.values()), dresses


def test_every_replicas_series_reach_the_nodes_ray_metrics_agent(service):
    """What Prometheus scrapes besides the Ingress's /metrics (docs/distributed.md): each node's
    Ray metrics agent, with Serve's series of every Parse and Dress replica that answered."""
    port = ray._private.worker._global_node.metrics_export_port
    deadline = time.monotonic() + 60  # the agent takes what each worker reports every few seconds
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        counted = {(s.labels["deployment"], s.labels["replica"]) for family in text_string_to_metric_families(text)
                   if family.name == "ray_serve_deployment_request_counter" for s in family.samples}
        deployments = [deployment for deployment, _ in counted]
        if min(deployments.count("Parse"), deployments.count("Dress")) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert deployments.count("Parse") >= 2 and deployments.count("Dress") >= 2, counted


def test_the_seeds_cloth_and_a_photo_tryon_run_parse_then_dress(service, local):
    body = {"image_person": base64.b64encode(photo(3)).decode(), "image_cloth": base64.b64encode(CLOTH).decode()}
    seed = service.post("/cloth", json=body)
    assert seed.status_code == 200, seed.text
    expected = local.dress(local.parse(photo(3), split_flags(**SEED_FLAGS)[0]), CLOTH, split_flags(**SEED_FLAGS)[1])[0]
    bmp = decode(base64.b64decode(seed.json()["output_image"]))
    assert np.array_equal(bmp, expected.image) and seed.json()["timings_ms"]["parse.jppnet_384"] > 0
    one_call = service.post("/v1/tryon", files={"person": ("p.png", photo(4)), "cloth": ("c.jpg", CLOTH)},
                            data={"format": "json"})
    assert one_call.status_code == 200 and one_call.json()["timings_ms"]["cpvton.tom"] > 0, one_call.text


@pytest.mark.parametrize("route, files, words", [
    ("/v1/persons", {"person": ("p.jpg", PERSON[:len(PERSON) // 2])}, ["person photo", "corrupt or truncated"]),
    ("/v1/tryon", {"person": ("p.png", photo(5)), "cloth": ("c.jpg", CLOTH[:len(CLOTH) // 2])},
     ["garment photo", "corrupt or truncated"]),
])
def test_an_image_only_a_replica_can_find_bad_is_a_422(service, route, files, words):
    """The header is sound, so the Ingress passes it on; the replica's decode refuses it."""
    answer = service.post(route, files=files)
    assert answer.status_code == 422, answer.text
    assert all(word in answer.json()["detail"] for word in words), answer.text
    assert service.get("/healthz").status_code == 200


def test_unknown_persons_and_bad_forms_are_refused_as_locally(service):
    assert service.post("/v1/tryon", data={"person_id": "0" * 32, "garment": "garment_tshirt"}).status_code == 404
    assert service.post("/v1/tryon", data={"garment": "garment_tshirt"}).status_code == 422
    assert service.post("/cloth", content=b"{not json").status_code == 400
    refused = service.post("/v1/persons", files={"person": ("p.jpg", PERSON)},
                           headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "evil.example" in refused.json()["detail"]


def test_beyond_the_replicas_and_the_queue_the_answer_is_503_with_retry_after(service):
    """Two Parse replicas take one parse each and one more waits: the rest of a burst of new
    photos is refused at once, in the local gate's words."""
    for burst in range(3):  # a burst that arrives slower than a parse may all fit
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: post_person(service, photo(100 + 8 * burst + n)), range(8)))
        busy = [a for a in answers if a.status_code == 503]
        assert all(a.status_code in (201, 503) for a in answers), [a.text for a in answers]
        if busy:
            break
    assert busy, "no burst of 8 new photos overloaded 2 replicas and a queue of 1"
    assert all("busy" in a.json()["detail"] and int(a.headers["retry-after"]) >= 1 for a in busy)
    assert post_person(service, photo(99)).status_code == 201  # and it serves again


def replicas(deployment: str) -> list[str]:
    return [actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["name"].startswith(f"SERVE_REPLICA::{APP}#{deployment}#")]


def watch_health(service, deployment: str, seen: list, stop) -> None:
    """/healthz's word and `deployment`'s entry, each fifth of a second, until stop is set."""
    while not stop.is_set():
        health = service.get("/healthz").json()
        seen.append((health["status"], health["deployments"][deployment]))
        time.sleep(0.2)


@pytest.mark.parametrize("deployment", ["Parse", "Dress"])
def test_a_replica_killed_during_a_burst_is_replaced_and_no_answer_is_a_bare_5xx(service, deployment):
    """A Parse or Dress replica killed (ray.kill, as a lost process) while a burst of uploads or
    try-ons runs: every answer is a success or a 503 with Retry-After, /healthz says a replica of
    that deployment is missing, Serve starts another, and /healthz says ok again."""
    import threading

    person_id = post_person(service, photo(7)).json()["person_id"]
    if deployment == "Parse":  # new photos, each one a parse
        call, success = (lambda i: post_person(service, photo(300 + i))), 201
    else:
        call, success = (lambda i: service.post("/v1/tryon", data={"person_id": person_id,
                                                                   "garment": "garment_tshirt"})), 200
    before = replicas(deployment)
    seen, stop = [], threading.Event()
    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        burst = [pool.submit(call, i) for i in range(24)]
        time.sleep(0.3)
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        watch = pool.submit(watch_health, service, deployment, seen, stop)
        answers = [future.result() for future in burst]
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {success, 503} and success in statuses, [a.text for a in answers]
        assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 503)
        deadline = time.monotonic() + 120  # Serve finds the replica gone at its next health check (10 s)
        while not (any(word == "degraded" for word, _ in seen) and seen[-1][0] == "ok") \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        stop.set()
        watch.result()
    missing = [entry for word, entry in seen if word == "degraded"]
    assert missing and all(entry["running"] < 2 and entry["status"] != "HEALTHY" for entry in missing), seen
    assert seen[-1] == ("ok", {"status": "HEALTHY", "running": 2, "replicas": {"RUNNING": 2}, "message": ""}), seen
    assert len(replicas(deployment)) == 2 and before[0] not in replicas(deployment), replicas(deployment)
    assert call(99).status_code == success


def test_redis_stopped_while_serving_photos_still_work_and_ids_are_refused_then_it_recovers(service,
                                                                                           redis_server):
    person_id = post_person(service, photo(8)).json()["person_id"]
    redis_server.stop()
    try:
        by_photo = service.post("/v1/tryon", files={"person": ("p.png", photo(9)), "cloth": ("c.jpg", CLOTH)})
        assert by_photo.status_code == 200, by_photo.text
        # the person is out of reach, not unknown: 503 with Retry-After, in words, never a 500 or a 404
        by_id = service.post("/v1/tryon", data={"person_id": person_id, "garment": "garment_tshirt"})
        assert by_id.status_code == 503 and person_id in by_id.json()["detail"], by_id.text
        assert int(by_id.headers["retry-after"]) > 0
    finally:
        redis_server.start()
    deadline = time.monotonic() + 90  # each store asks the server again 30 s after it failed
    while True:  # Redis keeps nothing on disk: the photo is parsed and stored again (503 until the store is back)
        created = post_person(service, photo(8))
        assert created.status_code in (200, 201, 503), created.text
        again = service.post("/v1/tryon", data={"person_id": created.json().get("person_id", person_id),
                                                "garment": "garment_tshirt"})
        assert again.status_code in (200, 404, 503), again.text
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert again.status_code == 200, again.text


def test_a_serve_configs_args_become_the_typed_settings(tiny_models_dir):
    """What a KubeRay RayService's `args` hold (docs/distributed.md): mappings of the fields."""
    config = {"pipeline": {"models": str(tiny_models_dir), "precision": "fp32", "scales": [1.0, 0.75],
                           "store": {"location": "redis://tryon-redis:6379/0", "ttl_hours": 2}},
              "parse_replicas": [2, 12], "allowed_hosts": ["tryon.shop.example"]}
    args = ServeArgs(**config)
    assert args.pipeline == PipelineSettings(str(tiny_models_dir), scales=(1.0, 0.75),
                                             store=StoreSettings("redis://tryon-redis:6379/0", ttl_hours=2))
    assert args.parse_replicas == (2, 12) and args.allowed_hosts == ("tryon.shop.example",)
    with pytest.raises(InputError, match="--engine ray needs --cache redis://"):
        ServeArgs(pipeline={"models": str(tiny_models_dir), "store": {"location": "/tmp/a-folder"}})


def test_a_serve_configs_keys_come_from_a_file_and_json_logs_from_log_format(tiny_models_dir, redis_server, tmp_path):
    """Outside Ray: the builder a Serve config names reads its keys from `api_keys_file` (the
    config holds no key) and hands them to the Ingress alone; log_format json makes every
    deployment's Serve log JSON (the Ingress's access lines in it carry their fields under "access")."""
    from tryon.serve.ray_engine import app

    (tmp_path / "keys").write_text(f"alice:{ALICE}\n")
    application = app({"pipeline": {"models": str(tiny_models_dir), "store": {"location": redis_server.url}},
                       "api_keys_file": str(tmp_path / "keys"), "log_format": "json"})
    ingress = application._bound_deployment
    parse, dress, _, _, keys = ingress.init_args
    parse, dress = parse._bound_deployment, dress._bound_deployment
    assert keys.name_of(f"Bearer {ALICE}".encode()) == "alice" and len(keys.keys) == 1
    assert all(ALICE not in repr(arg) for arg in (*parse.init_args, *dress.init_args))
    assert [d.logging_config["encoding"] for d in (ingress, parse, dress)] == ["JSON"] * 3
    with pytest.raises(InputError, match="log_format 'xml': choose text or json"):
        ServeArgs(pipeline={"models": str(tiny_models_dir), "store": {"location": redis_server.url}}, log_format="xml")


def test_an_error_of_the_machine_fails_the_replicas_health_check(args, tiny_models_dir):
    """Outside Ray: the replica class itself, its ONNX Runtime session made to fail."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail
    from tryon.images import ImageError

    unreachable = dataclasses.replace(args.pipeline, store=StoreSettings("redis://127.0.0.1:1/0"))
    replica = ParseReplica(dataclasses.replace(args, pipeline=unreachable,
                                               model_hashes=model_hashes(tiny_models_dir, "fp32")))
    with pytest.raises(ImageError):
        asyncio.run(replica.parse(b"not an image", ParseOptions()))
    replica.check_health()  # a bad input is the caller's

    def fail(*args, **kwargs):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : the device is gone")

    replica.pipeline.parse_stage.session.run = fail
    with pytest.raises(Fail):
        asyncio.run(replica.parse(PERSON, ParseOptions()))
    with pytest.raises(RuntimeError, match="the device is gone"):
        replica.check_health()


def test_a_replica_on_a_node_with_other_models_refuses_to_start(args, tiny_models_dir):
    other = {**model_hashes(tiny_models_dir, "fp32"), "tom": "0" * 64}
    with pytest.raises(InputError, match="are not the ones this service was deployed with"):
        dataclasses.replace(args, model_hashes=other).replica_pipeline(load_jppnet=False)


def test_a_dress_batch_runs_several_requests_together_and_refuses_a_bad_one_alone(args, local, tiny_models_dir):
    """Outside Ray: what @serve.batch hands a Dress replica, calls of two persons with two
    options, one with a garment only a decode can find bad."""
    from tryon.images import ImageError
    from tryon.options import DressOptions

    replica = DressReplica(dataclasses.replace(args, model_hashes=model_hashes(tiny_models_dir, "fp32")))
    first, second = local.parse(photo(6)), local.parse(photo(7))
    keep = DressOptions(keep_back=True)
    calls = [(first.to_bytes(), [CLOTH, CLOTH], DressOptions(), ".png"),
             (second.to_bytes(), [CLOTH[:len(CLOTH) // 2]], DressOptions(), ".png"),
             (second.to_bytes(), [CLOTH], keep, ".bmp")]
    outcomes = replica._dress_all(calls)
    [bad] = outcomes[1]  # the garment alone: the call's answer names it
    assert isinstance(bad, ImageError) and "corrupt or truncated" in str(bad)
    plain = local.dress_pairs([(first, decode(CLOTH))] * 2, DressOptions())  # the two good calls' batch
    assert [np.array_equal(decode(png), r.image) for (_, png), r in zip(outcomes[0], plain)] == [True, True]
    [(kept, bmp)] = outcomes[2]
    assert bmp[:2] == b"BM" and np.array_equal(kept.image, local.dress(second, CLOTH, keep)[0].image)
    assert kept.timings_ms["decode"] > 0 and kept.timings_ms["total"] > kept.timings_ms["cpvton.tom"]


def test_a_machine_too_small_for_the_replicas_at_their_most_is_refused(service, args):
    from tryon.errors import InputError
    from tryon.serve.ray_engine import _check_cpus

    _check_cpus(ray, args)  # the module's app: 2 + 2 replicas of half a CPU on the 2-CPU cluster
    with pytest.raises(InputError, match="4 parse and 2 dress replicas of 0.5 CPUs each need 3 CPUs; this "
                                         "machine has 2"):
        _check_cpus(ray, dataclasses.replace(args, parse_replicas=(1, 4)))
