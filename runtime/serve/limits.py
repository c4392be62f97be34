"""What the service refuses before doing real work, and how much work it does at once.

- `BodyLimit`: request bodies over the limit get a 413 before they are parsed (from the
  Content-Length header, or by counting when the client streams without one).
- `check_image`: format and pixel count from the header, so a decompression bomb costs
  nothing.
- `InferenceGate`: a bounded number of inferences in worker threads, a bounded queue in
  front of them, and a 503 with Retry-After for anything beyond.
"""
from __future__ import annotations

import math
import time

import anyio
from fastapi import HTTPException
from starlette.responses import JSONResponse

from ..images import FORMATS, ImageError, TooManyPixels, UnsupportedFormat, check_header

MAX_BODY_BYTES = 20 * 1024 * 1024


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int, size: int | None = None):
        got = f" ({size:,} bytes)" if size is not None else ""
        super().__init__(413, f"the request body{got} is over the limit of {max_bytes:,} bytes "
                              f"({max_bytes / 2**20:g} MB)")


class BodyLimit:
    """ASGI middleware in front of the routes, so that none of them parses an oversized body."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            error = BodyTooLarge(self.max_bytes, declared)
            response = JSONResponse({"detail": error.detail}, 413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # Raised inside the route's body read, so FastAPI's handlers turn it into the 413.
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def check_image(data: bytes, what: str, max_pixels: int) -> None:
    """Refuse what `images.decode` would refuse, with the HTTP status that says why."""
    if not data:
        raise HTTPException(422, f"{what}: the upload is empty; send a {FORMATS} file")
    try:
        check_header(data, what, max_pixels)
    except UnsupportedFormat as exc:
        raise HTTPException(415, str(exc)) from None
    except TooManyPixels as exc:
        raise HTTPException(413, str(exc)) from None
    except ImageError as exc:
        raise HTTPException(422, str(exc)) from None


class Overloaded(Exception):
    def __init__(self, retry_after: int, admitted: int):
        super().__init__(f"busy: {admitted} requests are already running or queued; "
                         f"retry in about {retry_after} s")
        self.retry_after = retry_after


class InferenceGate:
    """At most `max_concurrent` inferences run, each in a worker thread so the event loop keeps
    answering; at most `queue` more wait. Refusing the rest at once keeps latency and memory
    bounded, and a load balancer can send the retry elsewhere."""

    def __init__(self, max_concurrent: int, queue: int):
        if max_concurrent < 1 or queue < 0:
            raise ValueError(f"max_concurrent must be >= 1 and queue >= 0, got {max_concurrent} and {queue}")
        self.max_concurrent = max_concurrent
        self.queue = queue
        self.admitted = 0
        self._limiter = None  # anyio wants it created on the running event loop
        self._seconds = 1.0  # a recent inference's duration, for Retry-After

    async def run(self, fn, *args):
        if self.admitted >= self.max_concurrent + self.queue:
            raise Overloaded(self.retry_after(), self.admitted)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrent)
        self.admitted += 1
        try:
            return await anyio.to_thread.run_sync(self._timed, fn, *args, limiter=self._limiter)
        finally:
            self.admitted -= 1

    def _timed(self, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._seconds = time.perf_counter() - start

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained."""
        rounds = (self.max_concurrent + self.queue) / self.max_concurrent
        return max(1, math.ceil(self._seconds * rounds))
