"""Every refusal is a 4xx (or 503) JSON {"detail": "<what was wrong and what is accepted>"},
and the OpenAPI spec says so route by route (`refusals`)."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from ..images import ImageError
from .limits import ClientGone, Overloaded

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


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ImageError, _bad_image)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(ClientGone, _client_gone)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default is a list of dicts; one readable sentence serves people and clients better.
    problems = "; ".join(f"{_field(error['loc'])}: {error['msg']}" for error in exc.errors())
    return JSONResponse({"detail": f"{problems} (see /docs for {request.url.path})"}, 422)


def _field(loc) -> str:
    names = [str(part) for part in loc if part not in ("body", "query", "path", "header")]
    return ".".join(names) or "body"


async def _bad_image(request: Request, exc: ImageError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 422)


async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 503, headers={"Retry-After": str(exc.retry_after)})


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody is left to answer: one log line, not a traceback. 499 is nginx's "client closed request".
    log.info("%s", exc if isinstance(exc, ClientGone) else
             f"{request.method} {request.url.path}: the client went away during the upload")
    return Response(status_code=499)
