"""/v1: multipart try-on and the garment gallery."""
from __future__ import annotations

import base64
import json
from typing import Literal

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from ..images import FORMATS

router = APIRouter(prefix="/v1", tags=["v1"])

PNG_HEADERS_DOC = ("X-Tryon-Confidence, X-Tryon-Ok, X-Tryon-Synthetic, X-Tryon-Reason, and the "
                   "per-stage timings as a standard Server-Timing header (milliseconds).")


@router.post("/tryon", summary="Dress a person photo in a garment",
             description="Multipart form: `person` (a photo), and either `cloth` (a garment photo) "
                         f"or `garment` (an id from GET /v1/garments). Images: {FORMATS}.\n\n"
                         "`format=png` (default) answers image/png, 192x256, with " + PNG_HEADERS_DOC +
                         " `format=json` answers {confidence, ok, reason, timings_ms, "
                         "image_png_base64, synthetic}.\n\nok is confidence >= 0.1 (the seed's "
                         "threshold); when a photo is refused (no framable person, crossed arms "
                         "with check_dirty) the image is the framed photo and reason says why.",
             responses={200: {"content": {"image/png": {}, "application/json": {}}}})
async def tryon(request: Request,
                person: UploadFile = File(description="person photo"),
                cloth: UploadFile | None = File(None, description="garment photo (or give `garment`)"),
                garment: str | None = Form(None, description="gallery id (or upload `cloth`)"),
                need_pre: bool = Form(True, description="crop around the pose, resize to 256x192"),
                need_bright: bool = Form(False, description="brighten the photo x1.3 first"),
                keep_back: bool = Form(False, description="keep the photo outside the upper clothes"),
                need_dilate: bool = Form(False, description="soften the keep_back mask"),
                check_dirty: bool = Form(False, description="refuse arms crossing the torso"),
                format: Literal["png", "json"] = Form("png", description="png or json")):
    service = request.app.state.service
    cloth_input = await _garment(service.gallery, cloth, garment)
    flags = dict(need_pre=need_pre, need_bright=need_bright, keep_back=keep_back,
                 need_dilate=need_dilate, check_dirty=check_dirty)
    result, png = await service.predict(await person.read(), cloth_input, flags, ".png")
    synthetic = bool(service.tryon.synthetic)
    if format == "json":
        return JSONResponse({"confidence": result.confidence, "ok": result.ok, "reason": result.reason,
                             "timings_ms": result.timings_ms, "synthetic": synthetic,
                             "image_png_base64": base64.b64encode(png).decode("ascii")})
    return Response(png, media_type="image/png", headers={
        "X-Tryon-Confidence": f"{result.confidence:.6f}", "X-Tryon-Ok": json.dumps(result.ok),
        "X-Tryon-Synthetic": json.dumps(synthetic),
        "X-Tryon-Reason": result.reason.encode("ascii", "replace").decode("ascii"),
        "Server-Timing": ", ".join(f"{name};dur={ms:.1f}" for name, ms in result.timings_ms.items())})


async def _garment(gallery, cloth: UploadFile | None, garment_id: str | None):
    # A browser form sends an empty part for an untouched file input; that counts as absent.
    data = await cloth.read() if cloth is not None else b""
    if garment_id:
        if data:
            raise HTTPException(422, "give either a cloth file or a garment id, not both")
        found = gallery.get(garment_id)
        if found is None:
            raise HTTPException(422, f"garment {garment_id!r} is not in the gallery; "
                                     f"GET /v1/garments lists: {', '.join(gallery.garments)}")
        return found.rgb
    if cloth is None:
        raise HTTPException(422, "give a garment: a `cloth` file or a `garment` id from GET /v1/garments")
    return data


@router.get("/garments", summary="The garment gallery")
async def garments(request: Request) -> dict:
    return {"garments": request.app.state.service.gallery.listing()}


@router.get("/garments/{garment_id}.png", summary="One gallery garment as PNG",
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "no such garment"}})
async def garment_png(garment_id: str, request: Request) -> Response:
    found = request.app.state.service.gallery.get(garment_id)
    if found is None:
        raise HTTPException(404, f"no garment {garment_id!r}; GET /v1/garments lists the ids")
    return Response(found.png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})
