"""The app factory: the routes, limits and refusals over a TryOn in this process, or over an
`Inference` that runs elsewhere (Ray Serve). Nothing but the person store outlives a request."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from ..store import MemoryStore
from . import errors, persons_routes, seed_route, v1_routes, web_routes
from .gallery import Gallery
from .guard import LOCAL_NAMES, BrowserGuard
from .inference import Inference, LocalInference
from .limits import InferenceGate, Limits, UploadLimits
from .service import TryOnService

DESCRIPTION = """Virtual try-on (JPP-Net + CP-VTON) on ONNX Runtime.

- `POST /v1/persons`: parse a person photo once (seconds; `progressive=true`: a preview at once, the
  exact parse behind it); `POST /v1/tryon` with its `person_id`, or `POST /v1/persons/{person_id}/tryon`
  with several garments, then dresses it in a fraction of a second per garment; the first gallery
  garments are dressed ahead (`GET /v1/persons/{person_id}/dressed`). `GET`/`DELETE /v1/persons/{person_id}`.
- `POST /v1/tryon`: multipart upload (a photo or a person_id, and a garment), PNG or JSON answer.
- `POST /cloth`: the seed service's JSON contract (base64 in, base64 BMP out).
- `GET /v1/garments`: the gallery; `GET /web`: an upload page; `GET /healthz`.

Refusals are JSON `{"detail": "..."}` saying what was wrong and what is accepted; each operation
lists the statuses it can refuse with, and why (503 comes with Retry-After)."""


def create_app(tryon, *, store=None, gallery=(), max_concurrent: int = 1, queue: int = 8,
               limits: Limits = Limits(), allowed_hosts=LOCAL_NAMES, allowed_origins=()) -> FastAPI:
    """`tryon`: a TryOn (or a models folder) run here with at most `max_concurrent` inferences
    and `queue` waiting, or an `Inference` that keeps its own limits. `store`: put on the TryOn
    (default: its own, else one in memory). `gallery`: a Gallery, or folders of garment images."""
    if isinstance(tryon, Inference):
        inference = tryon
    else:
        if isinstance(tryon, (str, Path)):
            from ..pipeline import TryOn

            tryon = TryOn.from_dir(tryon)
        if store is not None or tryon.store is None:
            tryon.store = store or MemoryStore()
        inference = LocalInference(tryon, InferenceGate(max_concurrent, queue))
    if not isinstance(gallery, Gallery):
        gallery = Gallery.load(gallery)
    app = FastAPIOffline(title="tryon-onnx", description=DESCRIPTION, version="0.1.0",
                         responses=errors.refusals(*errors.ANY_REQUEST))
    app.state.service = TryOnService(inference, gallery, limits)
    app.add_middleware(UploadLimits, limits=limits)
    if allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(allowed_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["*"], expose_headers=[*v1_routes.TRYON_HEADERS, "Server-Timing",
                                                                "Retry-After", "X-Request-Id"])
    app.add_middleware(BrowserGuard, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins)  # outermost
    errors.install(app)
    for module in (seed_route, v1_routes, persons_routes, web_routes):
        app.include_router(module.router)
    app.mount("/web/static", StaticFiles(directory=web_routes.STATIC), name="static")
    return app
