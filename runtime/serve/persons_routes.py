"""/v1/persons: parse a photo once (seconds), then dress it in any number of garments (GMM and
TOM only): the parsed person is kept in the person store until it expires or is deleted."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from ..errors import InputError, NotFound, StoreUnavailable
from ..images import FORMATS, encode
from ..options import DressOptions, ParseOptions
from ..sheet import colour_labels
from .answers import (PNG_BODY, DressedAnswer, GarmentAnswer, ParsedAnswer, PersonAnswer, garment_answer,
                      person_answer)
from .errors import WITH_BODY, refusals
from .follow_up import PREDRESS_OPTIONS
from .v1_routes import JPEG_DCT_DOC, WARP_JPEG_DOC, JpegDct, gallery_garment

router = APIRouter(prefix="/v1/persons", tags=["persons"])

PERSONAL = {"Cache-Control": "no-store"}  # a person's data stays out of shared caches


@router.post("", summary="Parse a person photo once, for many garments", status_code=201,
             description="Multipart form: `person` (a photo: " + FORMATS + ") and the parse flags. Answers "
                         "**201** with the new `person_id` after running JPP-Net, or **200** at once, with the "
                         "same `person_id` and `cached: true`, when this photo was parsed before with the same "
                         "flags and is still stored. The id then dresses the person in garments (POST /v1/tryon "
                         "with person_id, POST /v1/persons/{person_id}/tryon) until `expires_at`, or until "
                         "DELETE /v1/persons/{person_id}.\n\n`progressive=true` answers with a quick preview "
                         "parse (`parse_quality: preview`; JPP-Net at one small scale) and runs the exact parse "
                         "in the background, which then replaces it under the same `person_id` (GET it, or POST "
                         "/v1/tryon with `wait=full`). After each parse the first gallery garments are dressed "
                         "in the background (GET /v1/persons/{person_id}/dressed).",
             response_model=ParsedAnswer,
             responses={200: {"model": ParsedAnswer, "description": "parsed before: found in the store"},
                        201: {"description": "parsed now"}, **refusals(*WITH_BODY, 415, 422, 503)})
async def create_person(request: Request,
                        person: UploadFile = File(description="person photo"),
                        need_pre: bool = Form(True, description="crop around the pose, resize to 256x192"),
                        need_bright: bool = Form(False, description="brighten the photo x1.3 first"),
                        check_dirty: bool = Form(False, description="refuse arms crossing the torso"),
                        jpeg_dct: JpegDct = Form("accurate", description=JPEG_DCT_DOC),
                        progressive: bool = Form(False, description="answer with a preview parse now, the exact "
                                                                    "one in the background")):
    service = request.app.state.service
    options = ParseOptions(need_pre, need_bright, check_dirty, jpeg_dct)
    call = await service.parse(request, await person.read(), options, progressive)
    parsed = call.parsed
    expires_at = await service.expires_at(parsed.id)
    if expires_at is None:
        store = await service.store_info()
        raise StoreUnavailable("the person store could not keep the parsed person"
                               f"{' (' + store['disabled'] + ')' if store['disabled'] else ''}; "
                               "POST /v1/tryon with the photo works without it",
                               retry_after=int(service.store.retry_s))
    body = {**person_answer(parsed, expires_at, service.synthetic), "cached": call.from_store,
            "timings_ms": call.timings_ms}
    return JSONResponse(body, 200 if call.from_store else 201,
                        headers={**PERSONAL, "Location": f"/v1/persons/{parsed.id}"})


@router.get("/{person_id}", summary="A parsed person: confidence, flags, keypoints, expiry",
            response_model=PersonAnswer, responses=refusals(404, 422))
async def get_person(person_id: str, request: Request):
    service = request.app.state.service
    parsed = await service.person(person_id, request)
    expires_at = await service.expires_at(person_id)
    if expires_at is None:  # expired between the two reads
        raise service.not_found(person_id)
    return JSONResponse(person_answer(parsed, expires_at, service.synthetic), headers=PERSONAL)


@router.get("/{person_id}/labels.png", summary="A parsed person's body-part labels, coloured (192x256 PNG)",
            response_class=Response,
            responses={200: {"content": PNG_BODY, "description": "the LIP labels in LIP_JPPNet's palette"},
                       **refusals(404, 422)})
async def person_labels(person_id: str, request: Request) -> Response:
    parsed = await request.app.state.service.person(person_id, request)
    return Response(encode(colour_labels(parsed.labels), ".png"), media_type="image/png", headers=PERSONAL)


@router.delete("/{person_id}", summary="Forget a parsed person now", status_code=204,
               response_class=Response, responses={204: {"description": "deleted"}, **refusals(404, 422)})
async def delete_person(person_id: str, request: Request) -> Response:
    service = request.app.state.service
    if not await service.delete(person_id, request):
        raise service.not_found(person_id)
    return Response(status_code=204)


@router.post("/{person_id}/tryon", summary="Dress a parsed person in several garments at once",
             description="Multipart form: any number of `cloth` files and/or `garment` ids (GET "
                         "/v1/garments), one garment at least and at most the server's `max_garments` "
                         "(GET /healthz; 16 unless `--max-garments` says otherwise). GMM and TOM run over "
                         "them in batches. Answers a list with one result per garment: the uploaded files "
                         "first (`garment` is cloth[0], cloth[1], ...), then the gallery ids, each in the "
                         "order sent (`index`). A file whose header is refused refuses the request; one that "
                         "then does not decode gets its own answer (`ok: false`, `reason`, no image) and the "
                         "other garments are dressed all the same.",
             response_model=list[GarmentAnswer], responses=refusals(404, *WITH_BODY, 415, 422, 503))
async def dress_person(person_id: str, request: Request,
                       cloth: list[UploadFile] = File([], description="garment photos"),
                       garment: list[str] = Form([], description="gallery ids"),
                       keep_back: bool = Form(False, description="keep the photo outside the upper clothes"),
                       need_dilate: bool = Form(False, description="soften the keep_back mask"),
                       warp_jpeg: bool = Form(False, description=WARP_JPEG_DOC)):
    service = request.app.state.service
    # An empty part is a browser's untouched file input: skipped, but the others keep their place (cloth[i]).
    uploads = [(index, data) for index, data in enumerate([await part.read() for part in cloth]) if data]
    count, most = len(uploads) + len(garment), service.limits.max_garments
    if not count:
        raise InputError("give one garment at least: `cloth` files and/or `garment` ids from GET /v1/garments")
    if count > most:
        raise InputError(f"{count} garments is over the limit of {most} per request; send them in "
                         f"several requests")
    garments = [data for _, data in uploads] + [gallery_garment(service.gallery, garment_id) for garment_id in garment]
    names = [f"cloth[{index}]" for index, _ in uploads] + list(garment)
    parsed = await service.person(person_id, request)
    dressed = await service.dress(request, parsed, garments, DressOptions(keep_back, need_dilate, warp_jpeg), names)
    return JSONResponse([garment_answer(index, name, outcome, service.synthetic, parsed)
                         for index, (name, outcome) in enumerate(zip(names, dressed))])


@router.get("/{person_id}/dressed", summary="The gallery dressed ahead for a person, as far as it is",
            response_model=DressedAnswer, responses=refusals(404, 422))
async def dressed_gallery(person_id: str, request: Request):
    service = request.app.state.service
    parsed = await service.person(person_id, request)
    garments = []
    for garment in service.follow.garments:
        found = [q for q in ("full", "preview") if await service.dressed(parsed, garment.id, PREDRESS_OPTIONS, q)]
        url = f"/v1/persons/{parsed.id}/dressed/{garment.id}.png?quality={found[0]}" if found else None
        garments.append({"id": garment.id, "parse_quality": found[0] if found else None, "url": url})
    return JSONResponse({"person_id": parsed.id, "parse_quality": parsed.quality,
                         "pending": service.follow.pending(parsed.id), "garments": garments}, headers=PERSONAL)


@router.get("/{person_id}/dressed/{garment_id}.png", summary="A person dressed ahead in a gallery garment",
            response_class=Response,
            responses={200: {"content": PNG_BODY, "description": "the try-on (default dress flags), header "
                                                                   "X-Tryon-Parse-Quality"},
                       **refusals(404, 422)})
async def dressed_png(person_id: str, garment_id: str, request: Request,
                      quality: Literal["full", "preview"] | None = Query(None, description="that parse's "
                                                                            "[default: the best kept]")):
    service = request.app.state.service
    parsed = await service.person(person_id, request)
    for kind in [quality] if quality else ["full", "preview"]:
        png = await service.dressed(parsed, garment_id, PREDRESS_OPTIONS, kind)
        if png is not None:
            return Response(png, media_type="image/png", headers={**PERSONAL, "X-Tryon-Parse-Quality": kind})
    raise NotFound(f"person {person_id[:64]!r} is not dressed in {garment_id[:64]!r} yet"
                   f"{f' from its {quality} parse' if quality else ''}: see GET /v1/persons/{{person_id}}/dressed")
