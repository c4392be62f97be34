"""The one object the routes share: the loaded pipeline, the gallery and the inference gate."""
from __future__ import annotations

from dataclasses import dataclass

from ..images import MAX_PIXELS, encode
from ..session import providers_in_use
from .gallery import Gallery
from .limits import InferenceGate, check_image


@dataclass
class TryOnService:
    tryon: object  # a TryOn, or anything with its predict() and synthetic
    gallery: Gallery
    gate: InferenceGate
    max_pixels: int = MAX_PIXELS

    async def predict(self, person: bytes, cloth, flags: dict, image_format: str):
        """(TryOnResult, the result image encoded as `image_format`). `cloth` is uploaded
        bytes or a gallery garment's RGB array."""
        check_image(person, "person photo", self.max_pixels)
        if isinstance(cloth, bytes):
            check_image(cloth, "garment photo", self.max_pixels)
        return await self.gate.run(self._predict, person, cloth, flags, image_format)

    def _predict(self, person, cloth, flags, image_format):
        # Decoding and encoding run here, in the worker thread, to keep the event loop free.
        result = self.tryon.predict(person, cloth, **flags)
        return result, encode(result.image, image_format)

    def family(self) -> str:
        return self.tryon.models.family

    def providers(self) -> list[str]:
        """What the sessions actually run on, not what was asked for."""
        found: list[str] = []
        for stage in (self.tryon.parse, self.tryon.cpvton):
            for value in vars(stage).values():
                if hasattr(value, "get_providers"):
                    found += [p for p in providers_in_use(value) if p not in found]
        return found
