"""Every refusal is a 4xx (or 503) JSON {"detail": "<what was wrong and what is accepted>"}, and
the OpenAPI spec says so route by route (`refusals`). One handler answers every TryonError (also
one relayed from a Ray replica) with its class's `http_status` and `headers`."""
from __future__ import annotations

import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..errors import CLIENT_CLOSED_REQUEST, TryonError

log = logging.getLogger("tryon.serve")


class Problem(BaseModel):
    detail: str = Field(description="what was wrong, and what is accepted")


WHY = {
    400: "a body that is not JSON (/cloth) or not a readable multipart form; or a Host header that is not "
         "one this server answers to (see --allowed-host)",
    403: "a browser request from a page on another site (see --allowed-origin)",
    404: "no such person (unknown, deleted or expired: upload the photo again) or garment",
    408: "the request body stalled (each part must arrive within the read timeout, the whole body within "
         "the upload timeout); the connection is closed",
    413: "a body over the size limit, or an image whose header announces more pixels than the limit",
    415: "an image in a format other than JPEG, PNG, BMP or WebP",
    422: "missing, extra or garbled fields, bad base64, an image that cannot be decoded",
    503: "every inference slot and queue place is taken (Retry-After says when to retry), or the person "
         "store could not keep a parsed person",
}
ANY_REQUEST = (400, 403)  # the Host and Origin checks answer before any route
WITH_BODY = (408, 413)  # what UploadLimits answers to any request with a body


def refusals(*statuses: int) -> dict:
    """OpenAPI `responses` for the refusals a route can give."""
    return {status: {"model": Problem, "description": WHY[status]} for status in statuses}


class HTTPCompatible(HTTPException):
    """Mixed in after a TryonError kind (`class BodyTooLarge(InputError, HTTPCompatible)`) for the
    errors that must also be HTTPExceptions: FastAPI re-raises an HTTPException from a failed body
    read as it is but turns any other error there into its own 400. The TryonError handler answers it."""
    __init__ = Exception.__init__
    __str__ = Exception.__str__
    __repr__ = Exception.__repr__

    @property
    def status_code(self) -> int:
        return self.http_status

    @property
    def detail(self) -> str:
        return str(self)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(TryonError, _refused)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(StarletteHTTPException, _http_refusal)


async def _http_refusal(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own refusals as FastAPI answers them, except that a 405 names every method of
    the path in Allow: Starlette names only those of the first route that matched the path
    (OPTIONS /v1/persons/{id} answered Allow: GET, though DELETE is served there too)."""
    if exc.status_code == 405:  # only then: a 404 must not walk every route
        path = request.url.path
        methods = {method for route in leaf_routes(request.app.router.routes) if route.path_regex.match(path)
                   for method in getattr(route, "methods", None) or ()}
        if methods:
            allow = {"Allow": ", ".join(sorted(methods))}
            exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), **allow})
    return await http_exception_handler(request, exc)


def leaf_routes(routes):
    """Every route with a path pattern, inside included routers too (FastAPI keeps one as a
    single entry holding the original router)."""
    for route in routes:
        inner = getattr(route, "routes", None) or getattr(getattr(route, "original_router", None), "routes", None)
        if inner:
            yield from leaf_routes(inner)
        elif getattr(route, "path_regex", None) is not None:
            yield route


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default is a list of dicts; one readable sentence serves people and clients better.
    problems = "; ".join(f"{_field(error['loc'])}: {error['msg']}" for error in exc.errors())
    return JSONResponse({"detail": f"{problems} (see /docs for {request.url.path})"}, 422)


def _field(loc) -> str:
    names = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(names) or "body"


async def _refused(request: Request, exc: TryonError) -> JSONResponse:
    """Every project error, raised here or relayed from a Ray replica, with its class's status."""
    exc = relayed(exc)
    if exc.http_status == CLIENT_CLOSED_REQUEST:  # nobody is left to read it: one log line, not a traceback
        log.info("%s", exc)
    return JSONResponse({"detail": str(exc)}, exc.http_status, headers=exc.headers)


def relayed(exc: TryonError) -> TryonError:
    """The replica's own error inside a Ray error that took its class (Ray raises a remote error
    as a `RayTaskError(<its class>)`, whose text is Ray's whole traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, TryonError) and any(kind.__module__.startswith("ray.") for kind in type(exc).__mro__):
        return relayed(cause)
    return exc


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody is left to answer: one log line, not a traceback. 499 is nginx's "client closed request".
    route = getattr(request.scope.get("route"), "path", "?")  # the template: a path may hold a person id
    log.info("%s", f"{request.method} {route}: the client went away during the upload")
    return Response(status_code=CLIENT_CLOSED_REQUEST)
