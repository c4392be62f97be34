"""What an operator needs around the app (issue 22), as an ASGI layer wrapped around it:
API keys, an `X-Request-Id` on every answer, one access-log line per request (person ids
never in clear), GET /metrics (behind the keys) and GET /readyz (open)."""
from __future__ import annotations

import json
import logging
import re
import time
import uuid

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response

from .auth import ApiKeys
from .errors import leaf_routes
from .metrics import Metrics

log = logging.getLogger("tryon.access")

# Open without a key: liveness and readiness, the page's own files, the API docs. OPTIONS too:
# a browser's CORS preflight never carries the Authorization header.
OPEN = frozenset({"/", "/web", "/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"})
OPEN_UNDER = ("/web/static/", "/static-offline-docs/")
CLIENT_ID = re.compile(r"[!-~]{1,64}")  # a client's X-Request-Id we keep: short, printable, no spaces
PLAIN = re.compile(r"[!#-~]+")  # what the text log writes as it is: printable, no spaces, no quotes
PERSON = re.compile(r"(?<=^/v1/persons/)[^/]+|[0-9a-fA-F]{16,}")  # what a path may carry of a person id
REFUSED = {"detail": "this route needs an API key: send the header Authorization: Bearer <key>"}


class Operations:
    def __init__(self, app, keys: ApiKeys = ApiKeys(), answer_id: bool = True):
        self.app = app
        self.keys = keys
        # False behind Ray Serve's proxy, which answers the request's first X-Request-Id, the client's
        # whatever it is or one it put there: that one is then logged, as the client received it.
        self.answer_id = answer_id
        self.metrics = Metrics(app.state.service)
        self.patterns = [(route.path_regex, route.path) for route in leaf_routes(app.routes)]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        headers = dict(scope["headers"])
        given = next((value for name, value in scope["headers"] if name == b"x-request-id"), b"")
        given = given.decode(errors="replace")  # as Serve's proxy reads it (it refuses an id not in UTF-8)
        request_id = given if CLIENT_ID.fullmatch(given) or given and not self.answer_id else uuid.uuid4().hex
        path, method = scope["path"], scope["method"]
        route = path if path in ("/metrics", "/readyz") else self._template(path)
        answered = {"status": 500, "timing": ""}  # 500: the app failed before it answered

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                answered["status"] = message["status"]
                kept = [(name, value) for name, value in message.get("headers", ()) if name.lower() != b"x-request-id"]
                answered["timing"] = b", ".join(value for name, value in kept
                                                if name.lower() == b"server-timing").decode("latin-1")
                ours = [(b"x-request-id", request_id.encode())] if self.answer_id else []
                message = {**message, "headers": [*kept, *ours]}
            await send(message)

        key_name = None
        self.metrics.in_flight.inc()
        try:
            if self.keys and method != "OPTIONS" and path not in OPEN and not path.startswith(OPEN_UNDER):
                key_name = self.keys.name_of(headers.get(b"authorization"))
                if key_name is None:
                    return await JSONResponse(REFUSED, 401, headers={"WWW-Authenticate": "Bearer"})(
                        scope, receive, send_with_id)
            owner = self.keys.owner(key_name) if key_name else ""
            scope = {**scope, "state": {**scope.get("state", {}), "key_name": key_name, "owner": owner,
                                        "request_id": request_id}}
            if path == "/readyz":
                await (await self._readiness())(scope, receive, send_with_id)
            elif path == "/metrics":
                body = await anyio.to_thread.run_sync(self.metrics.exposition)
                await Response(body, media_type=CONTENT_TYPE_LATEST)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            seconds, status = time.perf_counter() - start, answered["status"]
            self.metrics.observe(route or "(unmatched)", method, status, seconds, answered["timing"])
            fields = {"method": method, "route": route or PERSON.sub("{id}", path), "status": status,
                      "ms": round(seconds * 1e3, 1), "request_id": request_id, "key": key_name}
            text = {**fields, "route": plain(fields["route"]), "request_id": plain(request_id), "key": key_name or "-"}
            log.info("%(method)s %(route)s %(status)d %(ms).1fms request_id=%(request_id)s key=%(key)s", text,
                     extra={"access": fields})

    def _template(self, path: str) -> str | None:
        """The path pattern of the route that takes this path (/v1/persons/{person_id}), whatever
        the method; None when none does."""
        return next((template for pattern, template in self.patterns if pattern.match(path)), None)

    async def _readiness(self) -> Response:
        """200 once the models are loaded and the person store answers; else 503 and why."""
        service = self.app.state.service
        for check, failure in ((service.inference.describe, "the models do not answer"),
                               (service.store.info, "the person store does not answer")):
            try:
                await anyio.to_thread.run_sync(check)
            except Exception as exc:  # noqa: BLE001 -- its kind only: a store's text may name its host
                return JSONResponse({"detail": f"{failure} ({type(exc).__name__})"}, 503)
        return JSONResponse({"status": "ready"})


def plain(text: str) -> str:
    """`text` as the text log writes it: as it is, or else as a JSON string, so that no client's
    id or path (a space, a control character, a quote) breaks or forges a line."""
    return text if PLAIN.fullmatch(text) else json.dumps(text)


class JsonLines(logging.Formatter):
    """--log-format json: each record one JSON object; an access line's fields as they are."""
    converter = time.gmtime

    def format(self, record):
        fields = getattr(record, "access", None) or {"level": record.levelname.lower(), "logger": record.name,
                                                     "message": record.getMessage()}
        return json.dumps({"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%SZ"), **fields})
