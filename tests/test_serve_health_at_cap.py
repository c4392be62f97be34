"""Health checks answer while the connection cap is reached (issue 22, N5): stalled connections
fill --max-connections; a GET or HEAD of /healthz or /readyz beyond the cap is still served (and
closed), anything else gets the 503 with Retry-After, as does a connection silent past its first second."""
import json
import socket
import time
import urllib.request

import pytest
from serve_process import FAST, serve_process

CAP = 4
WAIT_S = 10


@pytest.fixture(scope="module")
def server(tiny_models_dir, tmp_path_factory):
    args = ("--max-connections", str(CAP), "--read-timeout", "30", "--no-cache", "--predress", "3", *FAST)
    with serve_process(tiny_models_dir, tmp_path_factory.mktemp("cap") / "serve.log", *args) as server:
        yield server


def connect(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=WAIT_S)


def ask(server, request: bytes) -> tuple[str, dict, bytes]:
    """Status line, headers and body of the answer; the server must close the connection after it."""
    with connect(server) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, dict(line.lower().split(": ", 1) for line in lines), body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def refused(answer) -> bool:
    status, headers, body = answer
    return status.startswith("HTTP/1.1 503") and headers.get("retry-after") == "1" and \
        "connections are open" in json.loads(body)["detail"]


def test_health_checks_are_served_beyond_the_cap_and_nothing_else(server):
    stalled = [connect(server) for _ in range(CAP)]
    for sock in stalled[::2]:
        sock.sendall(b"GET /v1/garments HTTP/1.1\r\nHost: 127")  # half a request head; the others send nothing
    try:
        time.sleep(0.3)  # the server accepts them all
        status, _, body = ask(server, get("/healthz"))
        assert status.startswith("HTTP/1.1 200") and json.loads(body)["models_loaded"], (status, body)
        assert json.loads(body)["limits"]["predress"] == 3  # tryon serve --predress reaches the service
        status, _, body = ask(server, get("/healthz") + get("/v1/garments"))  # closed after the health check
        assert status.startswith("HTTP/1.1 200") and b"HTTP/1.1" not in body, body
        assert not refused(ask(server, get("/healthz", "HEAD")))  # served: whatever the app answers to HEAD
        ready = ask(server, get("/readyz?probe=1"))
        assert ready[0].split()[1] in ("200", "503") and not refused(ready), ready
        for request in (get("/v1/garments"), get("/healthz", "POST"), get("/healthz/"), get("/healthzz"),
                        get("/web?/healthz"), b"GET /healthz HTTP/1.1"):  # the last: no line end within a second
            assert refused(ask(server, request)), request
        started = time.monotonic()
        assert refused(ask(server, b""))  # a silent connection beyond the cap: refused after its first second
        assert time.monotonic() - started < 3
    finally:
        for sock in stalled:
            sock.close()
    time.sleep(0.5)  # the server sees them close
    with urllib.request.urlopen(server.url + "/v1/garments", timeout=WAIT_S) as response:
        assert response.status == 200

