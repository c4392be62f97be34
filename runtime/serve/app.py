"""The app factory: load the models once, then serve them.

Stateless: nothing is written or remembered between requests, so several processes or hosts
can serve behind a load balancer.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ..images import MAX_PIXELS
from . import errors, seed_route, v1_routes, web_routes
from .gallery import Gallery
from .limits import MAX_BODY_BYTES, BodyLimit, InferenceGate
from .service import TryOnService

DESCRIPTION = """Virtual try-on (JPP-Net + CP-VTON) on ONNX Runtime.

- `POST /v1/tryon`: multipart upload, PNG or JSON answer.
- `POST /cloth`: the seed service's JSON contract (base64 in, base64 BMP out).
- `GET /v1/garments`: the gallery; `GET /web`: an upload page; `GET /healthz`.

Refusals are 4xx JSON `{"detail": "..."}`: 413 for bodies or pixel counts over the limits,
415 for formats other than JPEG/PNG/BMP/WebP, 422 for missing or garbled fields, 400 for
a body that is not JSON. 503 with Retry-After when every inference slot and queue place
is taken."""


def create_app(tryon, *, gallery=(), max_concurrent: int = 1, queue: int = 8,
               max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS) -> FastAPI:
    """`tryon`: a loaded TryOn, or a models folder to load one from. `gallery`: folders of
    garment images added to the bundled T-shirt."""
    if isinstance(tryon, (str, Path)):
        from ..tryon import TryOn

        tryon = TryOn.from_dir(tryon)
    service = TryOnService(tryon, Gallery.load(gallery), InferenceGate(max_concurrent, queue), max_pixels)
    app = FastAPI(title="tryon-onnx", description=DESCRIPTION, version="0.1.0")
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    errors.install(app)
    for module in (seed_route, v1_routes, web_routes):
        app.include_router(module.router)
    app.mount("/web/static", StaticFiles(directory=web_routes.STATIC), name="static")
    return app
