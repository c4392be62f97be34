"""The JSON the /v1 routes answer, as pydantic models: the OpenAPI spec shows them, and the
routes build their answers through them so that the two cannot drift apart."""
from __future__ import annotations

import base64

from pydantic import BaseModel, Field

from ..errors import TryonError
from ..pipeline import TryOnResult

PNG_BODY = {"image/png": {"schema": {"type": "string", "format": "binary"}}}  # a PNG answer's content
PARSE_QUALITY = ("which parse of the person: preview (progressive=true: a quick parse that the exact one replaces "
                 "under the same person_id) or full")


class Scored(BaseModel):
    """What every try-on answer says beside its image (the seed's /cloth too)."""
    confidence: float = Field(description="pose confidence; 0 when the photo was refused (see reason)")
    reason: str = Field(description="why the photo was refused, when it was; the image is then the framed photo")
    timings_ms: dict[str, float] = Field(description="milliseconds per stage, `total` last")


class TryOnAnswer(Scored):
    ok: bool = Field(description="confidence >= 0.1, the seed's threshold")
    image_png_base64: str = Field(description="the 192x256 result as a base64 PNG")
    synthetic: bool = Field(description="the models have synthetic (untrained) weights: the image is noise")
    person_id: str = Field(description="the parsed person's id, to dress it again without the photo")
    parse_quality: str = Field(description=PARSE_QUALITY)


class GarmentAnswer(TryOnAnswer):
    garment: str = Field(description="the gallery id, or cloth[i] for the i-th uploaded file")
    index: int = Field(description="its place in the answer and in the request: the uploaded files first, then the "
                                   "gallery ids")
    image_png_base64: str | None = Field(description="the 192x256 result as a base64 PNG; null when this garment "
                                                     "does not decode: then ok is false and reason says why")


class ParseFlags(BaseModel):
    need_pre: bool
    need_bright: bool
    check_dirty: bool


class PersonAnswer(BaseModel):
    person_id: str = Field(description="a content hash of the photo and of everything that changes its parse")
    confidence: float
    ok: bool = Field(description="confidence >= 0.1, the seed's threshold")
    reason: str = Field(description="why the photo is refused, when it is: every garment then returns the photo")
    options: ParseFlags = Field(description="the parse flags it was parsed with")
    keypoints: list[list[float]] = Field(description="16 LIP joints, [x, y] in the 192x256 frame")
    expires_at: str = Field(description="when the server forgets it (ISO 8601, UTC); DELETE forgets it now")
    labels_url: str = Field(description="its body-part labels as a coloured PNG")
    synthetic: bool
    parse_quality: str = Field(description=PARSE_QUALITY)


class ParsedAnswer(PersonAnswer):
    cached: bool = Field(description="true when the photo had been parsed before (answer 200, no JPP-Net run); "
                                     "false for a new parse (201)")
    timings_ms: dict[str, float]


class StoreAnswer(BaseModel):
    kind: str = Field(description="sqlite (a file on this machine), memory (this process), ...")
    persons: int
    bytes: int
    max_bytes: int
    ttl_s: float = Field(description="seconds a parsed person is kept from its parse")
    disabled: str = Field(description="why the store is off (requests still run, uncached); empty when on")


class LimitsAnswer(BaseModel):
    max_body_bytes: int
    max_pixels: int
    max_garments: int = Field(description="garments per POST /v1/persons/{person_id}/tryon")
    read_timeout_s: float
    upload_timeout_s: float
    predress: int = Field(description="gallery garments dressed ahead after each parse of a person (0: none)")


class StageAnswer(BaseModel):
    graph: str | None = Field(description="the manifest entry that runs this stage")
    file: str | None
    precision: str
    providers: list[str] = Field(description="what this stage's session runs on")


class HealthAnswer(BaseModel):
    status: str
    models_loaded: bool
    synthetic: bool
    providers: list[str] = Field(description="what the sessions run on, not what was asked for")
    family: str
    jppnet_graph: str = Field(description="the JPP-Net file in use (which --precision)")
    stages: dict[str, StageAnswer] = Field(description="per stage (parse, gmm_person, gmm, tom): the graph, "
                                                        "file, precision and providers that run it")
    max_concurrent: int
    queue: int
    in_flight: int
    store: StoreAnswer
    limits: LimitsAnswer


class GarmentListing(BaseModel):
    id: str
    url: str
    width: int
    height: int


class GalleryAnswer(BaseModel):
    garments: list[GarmentListing]


class DressedGarment(BaseModel):
    id: str
    parse_quality: str | None = Field(description="the best parse it is dressed from so far (full, preview), or "
                                                  "null: not dressed yet")
    url: str | None = Field(description="its PNG, while kept (GET /v1/persons/{person_id}/dressed/{id}.png)")


class DressedAnswer(BaseModel):
    person_id: str
    parse_quality: str = Field(description="the person's parse now: preview until the exact one replaces it")
    pending: bool = Field(description="background work for this person is still under way: ask again")
    garments: list[DressedGarment] = Field(description="the gallery garments dressed ahead (--predress), in order")


def tryon_answer(result, png: bytes | None, synthetic: bool, parsed, **extra) -> dict:
    return {"confidence": result.confidence, "ok": result.ok, "reason": result.reason,
            "timings_ms": result.timings_ms,
            "image_png_base64": None if png is None else base64.b64encode(png).decode("ascii"),
            "synthetic": synthetic, "person_id": parsed.id, "parse_quality": parsed.quality, **extra}


def garment_answer(index: int, garment: str, outcome, synthetic: bool, parsed) -> dict:
    """A GarmentAnswer: from (result, png), or from the TryonError that refused this garment alone."""
    refused = isinstance(outcome, TryonError)
    result, png = (TryOnResult(None, 0.0, {}, str(outcome)), None) if refused else outcome
    return tryon_answer(result, png, synthetic, parsed, garment=garment, index=index)


def person_answer(parsed, expires_at: str, synthetic: bool) -> dict:
    options = parsed.options
    return PersonAnswer(
        person_id=parsed.id, confidence=parsed.confidence, ok=parsed.ok, reason=parsed.reason,
        options=ParseFlags(need_pre=options.need_pre, need_bright=options.need_bright, check_dirty=options.check_dirty),
        keypoints=[[float(v) for v in point] for point in parsed.keypoints], expires_at=expires_at,
        labels_url=f"/v1/persons/{parsed.id}/labels.png", synthetic=synthetic,
        parse_quality=parsed.quality).model_dump()
