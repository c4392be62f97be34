"""The one object the routes share: the loaded pipeline, the gallery and the inference gate."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..images import MAX_PIXELS, encode
from ..session import providers_in_use
from .gallery import Gallery
from .limits import InferenceGate, check_image

if TYPE_CHECKING:
    from ..tryon import TryOn


@dataclass
class TryOnService:
    tryon: "TryOn"
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

    def jppnet_file(self) -> str:
        """The JPP-Net graph in use: which fast mode (--precision) is on, if any."""
        return self.tryon.models.entry(self.tryon.jppnet_graph)["file"]

    def providers(self) -> list[str]:
        """What the sessions actually run on, not what was asked for."""
        sessions = (self.tryon.parse_stage.session, self.tryon.cpvton.gmm, self.tryon.cpvton.tom)
        return list(dict.fromkeys(p for session in sessions for p in providers_in_use(session)))
