"""Connection and upload limits against a real `tryon serve` process on loopback (issue 12:
items 5, 6, 7): stalled and dribbled uploads, idle connections, the connection cap,
abandoned requests, clients that leave mid-upload. Raw sockets, bounded in count and time."""
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from serve_process import FAST, Server, free_port, serve_process
from tryon.examples import EXAMPLE_PERSON
from tryon.images import decode, encode
from tryon.pipeline import TryOn
from tryon.serve import create_app
from tryon.serve.server import Connections, listen, make_server
from tryon.store import MemoryStore

MAX_CONNECTIONS = 12
LIMITS = ("--read-timeout", "1", "--upload-timeout", "3", "--keep-alive", "1",
          "--max-connections", str(MAX_CONNECTIONS), "--max-concurrent", "1", "--queue", "8", "--no-cache")
WAIT_S = 6  # every limit above is at most 3 s: a socket still open after this was not closed by the server


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    with serve_process(tiny_models_dir, tmp_path_factory.mktemp("limits") / "serve.log", *LIMITS, *FAST) as server:
        yield server


def connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT_S)
    return sock


def head(server, path: str, length: int, content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {server.url.removeprefix('http://')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes; raises socket.timeout if it never does."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def healthz(server) -> dict:
    with urllib.request.urlopen(server.url + "/healthz", timeout=30) as response:
        return json.load(response)


def test_stalled_uploads_and_silent_connections_are_closed(server):
    stalled = []
    for _ in range(5):
        sock = connect(server)
        sock.sendall(head(server, "/cloth", 10_000) + b'{"image_person": "')
        stalled.append(sock)
    silent = [connect(server) for _ in range(5)]
    for sock in stalled:
        answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer, answer[:300]
    for sock in silent:
        assert read_all(sock) == b""
    for sock in stalled + silent:
        sock.close()
    assert healthz(server)["models_loaded"]


def test_a_dribbled_upload_meets_the_upload_timeout(server):
    with connect(server) as sock:
        sock.sendall(head(server, "/cloth", 100))
        start = time.monotonic()
        answer = b""
        for _ in range(40):  # a byte every 0.25 s: under the read timeout, over the upload timeout
            try:
                sock.sendall(b" ")
            except OSError:
                break
            time.sleep(0.25)
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert time.monotonic() - start < WAIT_S


def test_connections_beyond_the_cap_get_a_503_and_are_closed(server):
    held = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # let the server accept them all
        with connect(server) as extra:
            extra.sendall(b"GET /v1/garments HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
        assert "connections are open" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["detail"]
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.5)
    assert healthz(server)["models_loaded"]


def multipart_person(data: bytes) -> tuple[bytes, str]:
    boundary = "tryonboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"person\"; filename=\"p.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class HeldParse(TryOn):
    """The real pipeline whose parse waits for the test: the one inference slot stays busy
    while other requests queue behind it."""

    def __init__(self, tryon):
        super().__init__(tryon.parse_stage, tryon.cpvton, tryon.models, tryon.jppnet_graph, MemoryStore())
        self.entered, self.release, self.parses = threading.Event(), threading.Event(), 0

    def parse_call(self, *args, **kwargs):
        self.parses += 1
        self.entered.set()
        assert self.release.wait(30)
        return super().parse_call(*args, **kwargs)


def wait_until(condition, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_requests_whose_clients_left_are_dropped_not_computed(tiny_models_dir):
    """In-process (uvicorn in a thread) so that the test holds the slot for as long as it needs."""
    held = HeldParse(TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False))
    app = create_app(held, max_concurrent=1, queue=8)
    port = free_port()
    server = make_server(app, Connections(), log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listen("127.0.0.1", port)]})
    thread.start()
    url = Server(f"http://127.0.0.1:{port}", 0, Path("-"))
    try:
        wait_until(lambda: server.started)
        gate = app.state.service.inference.gate
        rgb = decode(EXAMPLE_PERSON.read_bytes())
        sockets = []
        for n in range(6):
            rgb[0, 0] = (n, 99, 99)  # six photos no store has seen: each would need a parse
            body, content_type = multipart_person(encode(rgb, ".png"))
            sock = connect(url)
            sock.sendall(head(url, "/v1/persons", len(body), content_type) + body)
            sockets.append(sock)
            if n == 0:
                assert held.entered.wait(30)  # the first holds the slot
        wait_until(lambda: gate.admitted == 6)  # the other five wait in the queue
        for sock in sockets[1:]:
            sock.close()  # abandoned: nobody will read those answers
        time.sleep(0.5)  # the server sees the connections close
        held.release.set()
        answer = read_all(sockets[0])
        wait_until(lambda: gate.admitted == 0)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
        assert held.parses == 1 and gate.dropped == 5
    finally:
        held.release.set()
        server.should_exit = True
        thread.join(30)
        for sock in sockets:
            sock.close()


def test_a_client_leaving_mid_upload_is_one_log_line(server):
    before = server.log.read_text().count("went away during the upload")
    for _ in range(3):
        with connect(server) as sock:
            sock.sendall(head(server, "/cloth", 100_000) + b'{"image_person": "' + b"A" * 1000)
    deadline = time.monotonic() + WAIT_S
    while server.log.read_text().count("went away during the upload") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.log.read_text().count("went away during the upload") == before + 3


def test_nothing_above_logged_a_traceback(server):
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
