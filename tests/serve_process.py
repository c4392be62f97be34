"""A real `tryon serve` process on a free loopback port, for the browser and load tests."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TRYON = Path(sys.executable).with_name("tryon")  # the console script installed with the package
FAST = ("--scales", "1.0", "--no-mirror", "--threads", "2")  # a quarter of JPP-Net's work; the service is the subject


@dataclass
class Server:
    url: str
    pid: int
    log: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_process(models: Path, log: Path, *args: str, start_timeout: float = 90):
    port = free_port()
    command = [str(TRYON), "serve", "--models", str(models), "--host", "127.0.0.1",
               "--port", str(port), "--provider", "cpu", *args]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process.pid, log)
    try:
        _wait_healthy(server, process, start_timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: Server, process: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tryon serve exited with {process.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if json.load(response)["models_loaded"]:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"tryon serve did not answer /healthz within {timeout} s:\n{server.log.read_text()[-3000:]}")
