"""What the service refuses before doing real work (`UploadLimits`: body size and pace;
`check_image`: format and pixels from the header), and how much work it does at once
(`InferenceGate`)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import anyio
from starlette.responses import JSONResponse

from ..errors import (CLIENT_CLOSED_REQUEST, EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_FAILED, InputError, TryonError,
                      Unavailable)
from ..images import FORMATS, MAX_PIXELS, ImageError, check_header
from .errors import HTTPCompatible

MAX_BODY_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-request limits (the connection limits are in `server.Connections`)."""
    max_body_bytes: int = MAX_BODY_BYTES
    max_pixels: int = MAX_PIXELS
    max_garments: int = 16  # per POST /v1/persons/{id}/tryon: two GMM/TOM batches
    read_timeout_s: float = 10.0  # longest wait for the next piece of a request body
    upload_timeout_s: float = 60.0  # longest time to receive a whole body
    predress: int = 16  # gallery garments dressed ahead for each parsed person (0: none)

    def __post_init__(self):
        if min(self.max_body_bytes, self.max_pixels, self.max_garments) < 1 or \
                min(self.read_timeout_s, self.upload_timeout_s) <= 0 or self.predress < 0:
            raise InputError(f"every limit must be positive (predress may be 0), got {self}")


# Raised inside a route's body read, so also HTTPExceptions (see HTTPCompatible). The rest of
# the body is never read, so the connection cannot carry another request: Connection: close.
class BodyTooLarge(InputError, HTTPCompatible):
    exit_code = EXIT_BAD_INPUT
    http_status = 413
    headers = {"Connection": "close"}


class UploadStalled(InputError, HTTPCompatible):
    exit_code = EXIT_BAD_INPUT
    http_status = 408
    headers = {"Connection": "close"}


def body_too_large(max_bytes: int, size: int | None = None) -> BodyTooLarge:
    got = f" ({size:,} bytes)" if size is not None else ""
    return BodyTooLarge(f"the request body{got} is over the limit of {max_bytes:,} bytes ({max_bytes / 2**20:g} MB)")


class UploadLimits:
    """ASGI middleware: a body over the size limit gets a 413 before it is parsed (from
    Content-Length, or by counting); one whose next chunk takes longer than `read_timeout_s`,
    or that is not all in after `upload_timeout_s`, a 408; either closes the connection."""

    def __init__(self, app, limits: Limits):
        self.app = app
        self.limits = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limits = self.limits
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            error = body_too_large(limits.max_body_bytes, int(declared))
            return await JSONResponse({"detail": str(error)}, error.http_status, headers=error.headers)(
                scope, receive, send)
        received, finished = 0, False
        deadline = time.monotonic() + limits.upload_timeout_s

        async def limited_receive():
            nonlocal received, finished
            if finished:  # the body is in: later calls only listen for a disconnect
                return await receive()
            wait = min(limits.read_timeout_s, deadline - time.monotonic())
            with anyio.move_on_after(max(wait, 0)):
                message = await receive()
                received += len(message.get("body", b""))
                if received > limits.max_body_bytes:
                    # Raised inside the route's body read, so FastAPI's handlers turn it into the 413.
                    raise body_too_large(limits.max_body_bytes)
                finished = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            raise UploadStalled(f"the request body stalled: each part must arrive within "
                                f"{limits.read_timeout_s:g} s and the whole body within "
                                f"{limits.upload_timeout_s:g} s ({received:,} bytes arrived)")

        await self.app(scope, limited_receive, send)


async def check_image(data: bytes, what: str, max_pixels: int) -> None:
    """Refuse what `images.decode` would refuse, from the header, in a worker thread (a 20 MB file
    must not stall the event loop): 415 format, 413 pixels (a decompression bomb costs nothing), 422."""
    if not data:
        raise ImageError(f"{what}: the upload is empty; send a {FORMATS} file")
    await anyio.to_thread.run_sync(check_header, data, what, max_pixels)


class Overloaded(Unavailable):
    """Every inference slot and queue place is taken: 503 with Retry-After."""
    exit_code = EXIT_ENVIRONMENT
    http_status = 503

    def __init__(self, retry_after: int, admitted: int):
        super().__init__(f"busy: {admitted} requests are already running or queued; "
                         f"retry in about {retry_after} s", retry_after)
        self.admitted = admitted

    def __reduce__(self):
        return type(self), (self.retry_after, self.admitted)


class ClientGone(TryonError):
    """The client disconnected while its request waited for a slot; its work is dropped."""
    exit_code = EXIT_FAILED
    http_status = CLIENT_CLOSED_REQUEST


class InferenceGate:
    """At most `max_concurrent` inferences run, each in a worker thread; at most `queue` more wait.
    Refusing the rest at once (503) keeps latency and memory bounded, and a load balancer can
    send the retry elsewhere. Background work (`run_background`) takes one slot at a time, and
    only while no request waits for one."""

    def __init__(self, max_concurrent: int, queue: int):
        if max_concurrent < 1 or queue < 0:
            raise InputError(f"max_concurrent must be >= 1 and queue >= 0, got {max_concurrent} and {queue}")
        self.max_concurrent = max_concurrent
        self.queue = queue
        self.admitted = 0
        self.waiting = 0  # requests admitted and not yet in a slot
        self.dropped = 0  # requests whose client left before their turn
        self._limiter = self._background = None  # anyio wants them created on the running event loop
        self._seconds = 1.0  # a recent inference's duration, for Retry-After

    async def run(self, request, fn, *args):
        """`fn(*args)` in a worker thread once a slot is free. While it waits, `request` (read, or
        None) is watched: when its client disconnects, the wait ends with ClientGone."""
        if self.admitted >= self.max_concurrent + self.queue:
            raise Overloaded(retry_after(self._seconds, self.max_concurrent, self.queue), self.admitted)
        self._start()
        self.admitted += 1
        self.waiting += 1
        try:
            try:
                await self._acquire(request)
            finally:
                self.waiting -= 1
            start = time.perf_counter()
            try:
                return await anyio.to_thread.run_sync(fn, *args)
            finally:
                self._seconds = time.perf_counter() - start
                self._limiter.release()
        finally:
            self.admitted -= 1

    async def run_background(self, fn, *args):
        """`fn(*args)` in a worker thread, in a slot taken only while no request waits: a request
        that comes meanwhile waits at most for the one background step already running."""
        self._start()
        async with self._background:
            while True:
                while self.waiting:
                    await anyio.sleep(0.02)
                await self._limiter.acquire()
                if not self.waiting:
                    break
                self._limiter.release()  # a request came while this waited for the slot: it goes first
            try:
                return await anyio.to_thread.run_sync(fn, *args)
            finally:
                self._limiter.release()

    def _start(self):
        if self._limiter is None:
            self._limiter, self._background = anyio.CapacityLimiter(self.max_concurrent), anyio.Lock()

    async def _acquire(self, request) -> None:
        if request is None:
            return await self._limiter.acquire()
        acquired = gone = False
        async with anyio.create_task_group() as group:
            async def watch():
                # uvicorn answers receive() with http.disconnect once the connection is lost
                # (and only reads the socket while someone waits here).
                nonlocal gone
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                gone = True
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await self._limiter.acquire()
            acquired = True
            group.cancel_scope.cancel()
        if gone:
            if acquired:
                self._limiter.release()
            self.dropped += 1
            raise ClientGone(f"{request.method} {request.url.path}: the client went away while the request "
                             "waited for its turn; dropped")


def retry_after(seconds: float, slots: int, queue: int) -> int:
    """Seconds until a full queue has likely drained, when a call takes `seconds` (a recent call's time)."""
    rounds = (slots + queue) / slots
    return max(1, math.ceil(seconds * rounds))
