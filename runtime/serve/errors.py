"""Every refusal is a 4xx JSON {"detail": "<what was wrong and what is accepted>"}."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..images import ImageError
from .limits import Overloaded


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ImageError, _bad_image)
    app.add_exception_handler(Overloaded, _overloaded)


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
