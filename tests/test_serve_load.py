"""A bounded load test: a real `tryon serve` process, concurrent clients, ~200 requests.

Run with `pytest -s tests/test_serve_load.py` to see throughput, latency and memory.
"""
import base64
import json
import statistics
import threading
import time
import urllib.error
import urllib.request
import uuid

from serve_process import FAST, serve_process
from tryon.examples import EXAMPLE_GARMENT, EXAMPLE_PERSON

PERSON = EXAMPLE_PERSON.read_bytes()
CLOTH = EXAMPLE_GARMENT.read_bytes()
CLIENTS = 4  # one more than the server admits (1 running + 2 queued), so 503s do happen
REQUESTS_PER_PHASE = 100
PHASE_TIMEOUT_S = 120


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{k}"\r\n'
              f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
              for k, data in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request_kinds(url: str, person_id: str) -> list[tuple[urllib.request.Request, set[int]]]:
    """A service's traffic, each with the answers allowed: try-ons by the four ways in and the
    photo upload (each may meet a full queue: 503), and the cheap requests around them,
    refusals included."""
    gallery, gallery_type = multipart({"garment": "garment_tshirt"}, {"person": PERSON})
    by_id, by_id_type = multipart({"person_id": person_id, "garment": "garment_tshirt"}, {})
    parse, parse_type = multipart({}, {"person": PERSON})
    upload, upload_type = multipart({"format": "json", "keep_back": "true"}, {"person": PERSON, "cloth": CLOTH})
    seed = json.dumps({"image_person": base64.b64encode(PERSON).decode(),
                       "image_cloth": base64.b64encode(CLOTH).decode()}).encode()
    not_an_image, not_an_image_type = multipart({"garment": "garment_tshirt"}, {"person": b"GIF89a" + bytes(64)})
    tryon = {200, 503}
    return [(urllib.request.Request(url + "/v1/tryon", gallery, {"Content-Type": gallery_type}), tryon),
            (urllib.request.Request(url + "/v1/garments"), {200}),
            (urllib.request.Request(url + "/v1/garments/garment_tshirt.png"), {200}),
            (urllib.request.Request(url + "/healthz"), {200}),
            (urllib.request.Request(url + "/v1/tryon", upload, {"Content-Type": upload_type}), tryon),
            (urllib.request.Request(url + "/v1/tryon", not_an_image, {"Content-Type": not_an_image_type}), {415}),
            (urllib.request.Request(url + "/web"), {200}),
            (urllib.request.Request(url + "/cloth", seed, {"Content-Type": "application/json"}), tryon),
            (urllib.request.Request(url + "/v1/tryon", by_id, {"Content-Type": by_id_type}), tryon),
            (urllib.request.Request(url + "/v1/persons", parse, {"Content-Type": parse_type}), {200, 201, 503})]


def send(request: urllib.request.Request) -> tuple[int, float, str | None]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status, time.perf_counter() - start, None
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, time.perf_counter() - start, error.headers.get("Retry-After")


def phase(kinds) -> list[tuple[int, int, float, str | None]]:
    """REQUESTS_PER_PHASE requests from CLIENTS threads: (kind, status, seconds, Retry-After)."""
    results, lock, counter = [], threading.Lock(), iter(range(REQUESTS_PER_PHASE))

    def client():
        while (i := _next(counter, lock)) is not None:
            kind = i % len(kinds)
            status, seconds, retry = send(kinds[kind][0])
            with lock:
                results.append((kind, status, seconds, retry))
            if status == 503:
                time.sleep(0.5)  # a polite client backs off (the full Retry-After would idle the test)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PHASE_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), f"a phase took over {PHASE_TIMEOUT_S} s"
    return results


def _next(counter, lock):
    with lock:
        return next(counter, None)


def test_concurrent_clients_get_answers_or_503_and_memory_stays_flat(tiny_models_dir, tmp_path):
    with serve_process(tiny_models_dir, tmp_path / "serve.log", "--max-concurrent", "1", "--queue", "2",
                       "--cache", str(tmp_path / "store"), *FAST) as server:
        body, content_type = multipart({}, {"person": PERSON})
        parsed = urllib.request.Request(server.url + "/v1/persons", body, {"Content-Type": content_type})
        with urllib.request.urlopen(parsed, timeout=60) as response:
            person_id = json.load(response)["person_id"]
        kinds = request_kinds(server.url, person_id)
        assert send(kinds[0][0])[0] == 200  # warm-up: first-run allocations are not growth
        start = time.perf_counter()
        first = phase(kinds)
        rss_first = server.rss_mb()
        second = phase(kinds)
        rss_second = server.rss_mb()
        elapsed = time.perf_counter() - start
    results = first + second
    wrong = [(kinds[k][0].full_url, status) for k, status, _, _ in results if status not in kinds[k][1]]
    assert not wrong, f"unexpected answers: {wrong[:5]}"
    refused = [retry for _, status, _, retry in results if status == 503]
    assert all(retry and int(retry) >= 1 for retry in refused), "a 503 without Retry-After"
    done = [[seconds for k, status, seconds, _ in half if status == 200 and kinds[k][1] == {200, 503}]
            for half in (first, second)]
    assert all(len(half) >= 5 for half in done), f"too few try-ons got through to compare memory: {done}"
    tryons = sorted(done[0] + done[1])
    assert rss_second - rss_first < 100, f"RSS grew from {rss_first:.0f} MB to {rss_second:.0f} MB"
    print(f"\n{len(results)} requests from {CLIENTS} clients in {elapsed:.1f} s: {len(results) / elapsed:.1f} req/s; "
          f"{len(tryons)} try-ons ({len(tryons) / elapsed:.2f}/s), {len(refused)} answered 503 "
          f"(max_concurrent=1, queue=2)\n"
          f"try-on latency: median {statistics.median(tryons) * 1e3:.0f} ms, "
          f"p95 {tryons[int(0.95 * (len(tryons) - 1))] * 1e3:.0f} ms (queueing included)\n"
          f"server RSS: {rss_first:.0f} MB after the first {REQUESTS_PER_PHASE} requests, "
          f"{rss_second:.0f} MB after the second")
