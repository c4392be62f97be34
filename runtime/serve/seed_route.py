"""POST /cloth: the seed service's JSON contract, for the clients written against it."""
from __future__ import annotations

import base64
import binascii
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..errors import EXIT_BAD_INPUT, BadRequest, InputError
from ..options import split_flags
from .answers import Scored
from .errors import WITH_BODY, HTTPCompatible, refusals

router = APIRouter(tags=["seed-compatible"])

# What the seed's /cloth passed to predict(); its clients' photos were tuned to this.
SEED_FLAGS = dict(need_pre=True, need_bright=True, keep_back=True, need_dilate=True, check_dirty=False)
FIELDS = ("image_person", "image_cloth")
CONTRACT = '{"image_person": "<base64 image>", "image_cloth": "<base64 image>"}'


# The body's refusals; also HTTPExceptions (HTTPCompatible) for callers of parse_body that catch those.
class NotJSON(BadRequest, HTTPCompatible):
    exit_code = EXIT_BAD_INPUT
    http_status = 400


class BadField(InputError, HTTPCompatible):
    exit_code = EXIT_BAD_INPUT
    http_status = 422


class ClothRequest(BaseModel):
    image_person: str = Field(description="person photo (JPEG, PNG, BMP or WebP), base64")
    image_cloth: str = Field(description="garment photo (JPEG, PNG, BMP or WebP), base64")


class ClothResponse(Scored):
    """The seed's answer; confidence, reason and timings_ms are added (the seed did not send them)."""
    status: str = Field(description='"ok", or "failure" when confidence < 0.1 (as the seed)')
    output_image: str = Field(description="base64 of a 192x256 BMP file, the seed's encoding")


DESCRIPTION = f"""The seed's contract: a JSON body {CONTRACT} in, `status` and `output_image` out.
The body is read whatever its Content-Type (the seed's get.py sent none), wrapped base64 too.
The seed's flags are kept: need_bright, keep_back and need_dilate on.

**Differences from the seed.** The seed rotated the photo 90 degrees, mirrored it and cut
[60:580, 45:435] out of it: the framing of one phone app's camera. We use the photo as sent
and let the pose-based crop frame the person, so send an upright photo.

**output_image** is a base64 BMP, byte for byte the seed's encoding (lossless; `POST /v1/tryon`
returns PNG). `confidence`, `timings_ms` and `reason` are extra fields; old clients ignore them."""


@router.post("/cloth", response_model=ClothResponse, summary="Try on (the seed's JSON contract)",
             description=DESCRIPTION, openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": ClothRequest.model_json_schema()}}}},
             responses=refusals(*WITH_BODY, 415, 422, 503))
async def cloth(request: Request) -> JSONResponse:
    person, garment = parse_body(await request.body())
    _, result, bmp = await request.app.state.service.tryon_one(request, person, garment, *split_flags(**SEED_FLAGS),
                                                               ".bmp")
    # Built in the seed's key order (a ClothResponse would put Scored's added fields first).
    return JSONResponse({"status": "ok" if result.ok else "failure", "output_image": base64.b64encode(bmp).decode(),
                         "confidence": result.confidence, "timings_ms": result.timings_ms, "reason": result.reason})


def parse_body(body: bytes) -> tuple[bytes, bytes]:
    # Android's Base64.DEFAULT wraps lines; raw line breaks are not allowed inside JSON strings.
    text = body.replace(b"\r", b"").replace(b"\n", b"")
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: not JSON, or an integer over Python's 4,300 digits; RecursionError: nested too deep.
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise NotJSON(f"the body is not JSON this service can read ({why}); send {CONTRACT}") from None
    if not isinstance(data, dict):
        raise BadField(f"the body is JSON but not an object; send {CONTRACT}")
    return tuple(_base64_field(data, name) for name in FIELDS)


def _base64_field(data: dict, name: str) -> bytes:
    if name not in data:
        raise BadField(f"{name} is missing; send {CONTRACT}")
    value = data[name]
    if value is None:
        raise BadField(f"{name} is null; it must be a base64 string of a JPEG, PNG, BMP or WebP "
                       f"file: send {CONTRACT}")
    if not isinstance(value, str):
        raise BadField(f"{name} must be a base64 string, got {type(value).__name__}")
    if value.startswith("data:"):  # a browser's FileReader.readAsDataURL
        value = value.partition(",")[2]
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadField(f"{name} is not valid base64 (standard alphabet A-Z a-z 0-9 + /, "
                       "padded with =)") from None
