"""/v1: the one-call multipart try-on and the garment gallery."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from ..errors import InputError, NotFound
from ..images import FORMATS, load_rgb
from ..options import DressOptions, ParseOptions
from ..pipeline import TryOnResult
from .answers import PNG_BODY, GalleryAnswer, TryOnAnswer, tryon_answer
from .errors import WITH_BODY, refusals

router = APIRouter(prefix="/v1", tags=["v1"])

# What a PNG answer says beside the image (app.py lets other sites' pages read them too).
TRYON_HEADERS = ("X-Tryon-Confidence", "X-Tryon-Ok", "X-Tryon-Synthetic", "X-Tryon-Reason",
                 "X-Tryon-Person-Id", "X-Tryon-Parse-Quality")
PNG_HEADERS_DOC = (f"{', '.join(TRYON_HEADERS)}, and the per-stage timings as a standard Server-Timing "
                   "header (milliseconds).")
PARSE_FLAG_DOC = " (a parse flag: with `person_id`, leave it out or give the value the person was parsed with)"
JpegDct = Literal["accurate", "fast"]
JPEG_DCT_DOC = ("JPEG decode of the person photo: accurate (the seed's PIL/OpenCV decode) or fast "
                "(LIP_JPPNet's TensorFlow decode_jpeg, bit for bit; the server needs the fastdct extra)")
WARP_JPEG_DOC = ("hand the warped garment to TOM through a quality-75 JPEG, as cp-vton's test pipeline did "
                 "(the seed casts it to uint8 in memory)")


@router.post("/tryon", summary="Dress a person in a garment",
             description="Multipart form. The person: `person` (a photo), or `person_id` (from POST "
                         "/v1/persons: no JPP-Net, a fraction of a second); exactly one of them. The "
                         "garment: `cloth` (a photo) or `garment` (an id from GET /v1/garments); exactly one. "
                         f"Images: {FORMATS}. A photo sent before with the same parse flags is found in the "
                         "person store instead of parsed again.\n\n"
                         "`format=png` (default) answers image/png, 192x256, with " + PNG_HEADERS_DOC +
                         " `format=json` answers {confidence, ok, reason, timings_ms, image_png_base64, "
                         "synthetic, person_id, parse_quality}. A person_id dressed in a gallery garment before "
                         "(or ahead, after its parse) answers from the person store, without GMM/TOM; `wait=full` "
                         "first waits for the exact parse behind a preview.\n\nok is confidence >= 0.1 (the "
                         "seed's threshold); when a photo is refused (no framable person, crossed arms with "
                         "check_dirty) the image is the framed photo and reason says why.",
             response_class=Response,
             responses={200: {"model": TryOnAnswer, "description": "the try-on", "content": PNG_BODY},
                        **refusals(404, *WITH_BODY, 415, 422, 503)})
async def tryon(request: Request,
                person: UploadFile | None = File(None, description="person photo (or give `person_id`)"),
                person_id: str | None = Form(None, description="a person from POST /v1/persons (or upload `person`)"),
                cloth: UploadFile | None = File(None, description="garment photo (or give `garment`)"),
                garment: str | None = Form(None, description="gallery id (or upload `cloth`)"),
                need_pre: bool | None = Form(None, description="crop around the pose, resize to 256x192 "
                                                               "[default: true]" + PARSE_FLAG_DOC),
                need_bright: bool | None = Form(None, description="brighten the photo x1.3 first "
                                                                  "[default: false]" + PARSE_FLAG_DOC),
                check_dirty: bool | None = Form(None, description="refuse arms crossing the torso "
                                                                  "[default: false]" + PARSE_FLAG_DOC),
                jpeg_dct: JpegDct | None = Form(None, description=JPEG_DCT_DOC + " [default: accurate]"
                                                + PARSE_FLAG_DOC),
                keep_back: bool = Form(False, description="keep the photo outside the upper clothes"),
                need_dilate: bool = Form(False, description="soften the keep_back mask"),
                warp_jpeg: bool = Form(False, description=WARP_JPEG_DOC),
                format: Literal["png", "json"] = Form("png", description="png or json"),
                wait: Literal["full"] | None = Form(None, description="with person_id: full waits for the exact "
                                                                      "parse behind a preview (progressive=true)")):
    service = request.app.state.service
    given = {k: v for k, v in dict(need_pre=need_pre, need_bright=need_bright, check_dirty=check_dirty,
                                   jpeg_dct=jpeg_dct).items() if v is not None}
    photo = await person.read() if person is not None else b""  # a browser's untouched file input: empty
    if photo and person_id:
        raise InputError("give either a person photo or a person_id, not both")
    if person_id:
        if wait == "full":
            await service.person(person_id, request)  # another owner's person: 404 before any wait
            await service.follow.wait_exact(person_id)
        subject = await service.person(person_id, request)
        _check_same_parse(subject.options, given)
    elif person is not None:
        subject = photo
    else:
        raise InputError("give a person: a `person` photo, or a `person_id` from POST /v1/persons")
    garment_input = await _garment(service.gallery, cloth, garment)
    dress_options = DressOptions(keep_back, need_dilate, warp_jpeg)
    kept = await _kept(service, subject, garment, dress_options) if person_id and garment else None
    if kept is not None:
        parsed, result, png = subject, *kept
    else:
        parsed, result, png = await service.tryon_one(request, subject, garment_input, ParseOptions(**given),
                                                      dress_options, ".png")
        if person_id and garment:
            await service.keep_dressed(parsed, garment, dress_options, png)
    if format == "json":
        return JSONResponse(tryon_answer(result, png, service.synthetic, parsed))
    return Response(png, media_type="image/png", headers={
        "X-Tryon-Confidence": f"{result.confidence:.6f}", "X-Tryon-Ok": json.dumps(result.ok),
        "X-Tryon-Synthetic": json.dumps(service.synthetic), "X-Tryon-Person-Id": parsed.id,
        "X-Tryon-Parse-Quality": parsed.quality,
        "X-Tryon-Reason": result.reason.encode("ascii", "replace").decode("ascii"),
        "Server-Timing": ", ".join(f"{name};dur={ms:.1f}" for name, ms in result.timings_ms.items())})


async def _kept(service, parsed, garment_id: str, options: DressOptions):
    """(result, PNG) of a try-on kept in the person store, or None: the same bytes as a new dress."""
    start = time.perf_counter()
    png = await service.dressed(parsed, garment_id, options)
    if png is None:
        return None
    ms = (time.perf_counter() - start) * 1000
    result = TryOnResult(load_rgb(png, "kept try-on"), parsed.confidence, {"kept": ms, "total": ms}, parsed.reason)
    return result, png


def _check_same_parse(options: ParseOptions, given: dict) -> None:
    parsed_with = asdict(options)
    changed = {name: value for name, value in given.items() if parsed_with[name] != value}
    if changed:
        wanted = ", ".join(f"{name}={json.dumps(value)}" for name, value in changed.items())
        was = ", ".join(f"{name}={json.dumps(parsed_with[name])}" for name in changed)
        raise InputError(f"this person was parsed with {was}; a parse flag cannot change without a new "
                         f"parse: upload the photo with {wanted} (POST /v1/persons), or leave it out")


async def _garment(gallery, cloth: UploadFile | None, garment_id: str | None):
    # A browser form sends an empty part for an untouched file input; that counts as absent.
    data = await cloth.read() if cloth is not None else b""
    if garment_id:
        if data:
            raise InputError("give either a cloth file or a garment id, not both")
        return gallery_garment(gallery, garment_id)
    if cloth is None:
        raise InputError("give a garment: a `cloth` file or a `garment` id from GET /v1/garments")
    return data


def gallery_garment(gallery, garment_id: str):
    found = gallery.garments.get(garment_id)
    if found is None:
        raise InputError(f"garment {garment_id[:64]!r} is not in the gallery; "
                         f"GET /v1/garments lists: {', '.join(gallery.garments)}")
    return found.rgb


@router.get("/garments", summary="The garment gallery", response_model=GalleryAnswer)
async def garments(request: Request) -> dict:
    return {"garments": request.app.state.service.gallery.listing()}


@router.get("/garments/{garment_id}.png", summary="One gallery garment as PNG", response_class=Response,
            responses={200: {"content": PNG_BODY, "description": "the garment"}, **refusals(404, 422)})
async def garment_png(garment_id: str, request: Request) -> Response:
    found = request.app.state.service.gallery.garments.get(garment_id)
    if found is None:
        raise NotFound(f"no garment {garment_id[:64]!r}; GET /v1/garments lists the ids")
    return Response(found.png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})
