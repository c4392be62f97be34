"""GET /web (the page), GET /healthz, and / pointing at the page."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .answers import HealthAnswer

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter()

# The page loads nothing from elsewhere; the browser enforces that promise.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


@router.get("/web", summary="Upload page", tags=["web"], response_class=Response,
            responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "the page"}})
async def web() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"),
                        headers={"Content-Security-Policy": PAGE_POLICY})


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/web")


@router.get("/healthz", summary="Models, providers, JPP-Net graph, synthetic flag, queue, person store, limits",
            tags=["web"], response_model=HealthAnswer)
async def healthz(request: Request) -> dict:
    service = request.app.state.service
    return {"status": "ok", "models_loaded": True, **service.inference.describe(), **service.inference.load(),
            "store": await service.store_info(), "limits": asdict(service.limits)}
