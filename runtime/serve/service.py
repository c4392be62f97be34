"""The one object the routes share: the `Inference`, its person store, the gallery and the
limits. Every image header is checked here before any inference."""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import anyio

from ..errors import NotFound, StoreUnavailable
from ..options import DressOptions, ParseOptions
from ..parsed_person import ParseCall, ParsedPerson
from .follow_up import FollowUp, dressed_key
from .gallery import Gallery
from .inference import Inference
from .limits import Limits, check_image

if TYPE_CHECKING:
    from ..pipeline import TryOnResult

UPLOAD_AGAIN = "upload the photo again (POST /v1/persons) for a new person_id"


@dataclass
class TryOnService:
    inference: Inference
    gallery: Gallery
    limits: Limits = Limits()
    follow: FollowUp = field(init=False)

    def __post_init__(self):
        if not self.inference.background:  # an engine without background work dresses nothing ahead
            self.limits = replace(self.limits, predress=0)
        self.follow = FollowUp(self.inference, list(self.gallery.garments.values())[:self.limits.predress])

    @property
    def store(self):
        return self.inference.store

    @property
    def synthetic(self) -> bool:
        return self.inference.describe()["synthetic"]

    async def parse(self, request, photo: bytes, options: ParseOptions, progressive: bool = False) -> ParseCall:
        """progressive: a preview now, the exact parse in the background; either way the gallery
        is dressed ahead in the background."""
        await check_image(photo, "person photo", self.limits.max_pixels)
        options = replace(options, owner=owner(request))
        call = await (self.inference.parse_preview if progressive else self.inference.parse)(request, photo, options)
        self.follow.start(call, photo, options)
        return call

    async def tryon_one(self, request, person, garment, parse_options: ParseOptions, dress_options: DressOptions,
                        image_format: str) -> tuple[ParsedPerson, "TryOnResult", bytes]:
        """`person`: photo bytes or a ParsedPerson; `garment`: uploaded bytes or a gallery RGB array."""
        if isinstance(person, bytes):
            await check_image(person, "person photo", self.limits.max_pixels)
            parse_options = replace(parse_options, owner=owner(request))
        if isinstance(garment, bytes):
            await check_image(garment, "garment photo", self.limits.max_pixels)
        return await self.inference.tryon(request, person, garment, parse_options, dress_options, image_format)

    async def dress(self, request, parsed: ParsedPerson, garments: list, options: DressOptions,
                    names: list[str]):
        """`Inference.dress` in PNG. A header that refuses an upload refuses the request, naming
        the garment as `names` does."""
        for garment, name in zip(garments, names):
            if isinstance(garment, bytes):
                await check_image(garment, f"garment photo {name}", self.limits.max_pixels)
        return await self.inference.dress(request, parsed, garments, options, ".png")

    async def person(self, person_id: str, request) -> ParsedPerson:
        """A stored person of the request's owner (API key), or a 404 that says what to do: another
        owner's person is as unknown as one never parsed."""
        found = await anyio.to_thread.run_sync(self.store.get, person_id) if _plausible(person_id) else None
        if found is None and getattr(self.store, "disabled", ""):
            raise StoreUnavailable(f"the person store cannot be reached now, so person {person_id[:64]!r} cannot be "
                                   "read; retry in a moment, or send the photo itself (POST /v1/tryon with `person`)",
                                   retry_after=int(self.store.retry_s))
        if found is None or found.options.owner != owner(request):
            raise self.not_found(person_id)
        return found

    def not_found(self, person_id: str) -> NotFound:
        return NotFound(f"no person {person_id[:64]!r}: unknown, deleted or expired (persons are "
                        f"kept {self.store.ttl_s / 3600:g} h); {UPLOAD_AGAIN}")

    async def expires_at(self, person_id: str) -> str | None:
        """When the stored person expires (ISO 8601, UTC), or None when it is not stored."""
        stored = await anyio.to_thread.run_sync(self.store.stored_at, person_id)
        if stored is None:
            return None
        moment = datetime.datetime.fromtimestamp(self.store.expires_at(stored), datetime.timezone.utc)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")

    async def delete(self, person_id: str, request) -> bool:
        await self.person(person_id, request)  # another owner's person: 404, kept
        self.follow.forget(person_id)
        return await anyio.to_thread.run_sync(self.store.delete, person_id)

    async def dressed(self, parsed: ParsedPerson, garment_id: str, options: DressOptions,
                      quality: str | None = None) -> bytes | None:
        """The PNG of this person (at `quality`, by default its own) in a gallery garment, if kept."""
        key = dressed_key(quality or parsed.quality, garment_id, options)
        return await anyio.to_thread.run_sync(self.store.get_dressed, parsed.id, key)

    async def keep_dressed(self, parsed: ParsedPerson, garment_id: str, options: DressOptions, png: bytes) -> None:
        key = dressed_key(parsed.quality, garment_id, options)
        await anyio.to_thread.run_sync(self.store.put_dressed, parsed.id, key, png)

    async def store_info(self) -> dict:
        info = await anyio.to_thread.run_sync(self.store.info)
        # The store's path stays private: it names a folder of the machine serving.
        return {"kind": info["kind"], "persons": info.get("persons", 0), "bytes": info.get("bytes", 0),
                "max_bytes": info["max_bytes"], "ttl_s": info["ttl_s"], "disabled": info.get("disabled", "")}


def _plausible(person_id: str) -> bool:
    """Ids are short hex digests; anything else is unknown without asking the store."""
    return 0 < len(person_id) <= 64 and all(c in "0123456789abcdef" for c in person_id)


def owner(request) -> str:
    """The owner the operations layer gave this request (its API key's digest; "" without keys)."""
    return getattr(request.state, "owner", "")
