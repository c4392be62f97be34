"""A parsed person: everything `TryOn.dress` needs from a person photo (never the upload).

Its id is a content hash of the decoded pixels and of everything else that changes a parse,
so the same photo sent twice gets the same id. `to_bytes` / `from_bytes` give a compact,
pickle-free form for the person stores.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field

import numpy as np

from .errors import EXIT_FAILED, TryonError
from .options import ParseOptions

SEED_FAILURE_CONFIDENCE = 0.1  # below this the seed's service answered "failure"
# Bump when the stored form changes; older records then read as missing. 2: `quality` (a
# version-1 reader would take a preview for the exact parse, so it must see 2 as missing).
FORMAT = 2
QUALITIES = ("preview", "full")


class StoredPersonError(TryonError):
    """Bytes that are not a stored parsed person of this version."""
    exit_code = EXIT_FAILED
    http_status = 503  # the service's own bytes (another version's replica): not the request's fault


@dataclass
class ParsedPerson:
    id: str
    person: np.ndarray  # 256x192x3 uint8 RGB: the framed photo (the whole photo resized, when refused)
    labels: np.ndarray  # 256x192 uint8 LIP labels
    keypoints: np.ndarray  # (16, 2) LIP joints x/y in the 256x192 frame
    confidence: float  # 0 when a hard exclusion fired; then `reason` says which
    reason: str = ""
    options: ParseOptions = ParseOptions()
    # "preview": JPP-Net at one small scale, no mirror (TryOn.parse(preview=True)), stored under
    # the id of the exact parse that replaces it; "full": the configured scales, mirror, precision.
    quality: str = "full"
    # Its stored form once made or read: a person travels as bytes to the store and between
    # Ray replicas, and compressing it again each time cost ~4 ms. `replace` drops it.
    _stored: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.confidence >= SEED_FAILURE_CONFIDENCE

    @property
    def refused(self) -> bool:
        """No garment can be put on it: the photo is returned as it is."""
        return bool(self.reason)

    def to_bytes(self) -> bytes:
        if self._stored is None:
            meta = {"format": FORMAT, "id": self.id, "confidence": self.confidence, "reason": self.reason,
                    "options": self.options.__dict__, "quality": self.quality}
            buffer = io.BytesIO()
            np.savez_compressed(buffer, person=self.person, labels=self.labels, keypoints=self.keypoints,
                                meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
            self._stored = buffer.getvalue()
        return self._stored

    @classmethod
    def from_bytes(cls, data: bytes) -> "ParsedPerson":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                meta = json.loads(arrays["meta"].tobytes())
                if meta.get("format") != FORMAT or meta["quality"] not in QUALITIES:
                    raise StoredPersonError(f"stored person format {meta.get('format')!r}, expected {FORMAT}")
                parsed = cls(meta["id"], arrays["person"], arrays["labels"], arrays["keypoints"],
                             float(meta["confidence"]), meta["reason"], ParseOptions(**meta["options"]),
                             meta["quality"])
            parsed._stored = bytes(data)
            return parsed
        except StoredPersonError:
            raise
        except Exception as exc:  # zip, npy and JSON each raise their own kinds on garbage
            raise StoredPersonError(f"not a stored parsed person ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class ParseCall:
    """One parse call's person and facts, kept apart: a store shares the person between calls."""
    parsed: ParsedPerson
    timings_ms: dict[str, float] = field(default_factory=dict)  # this call's steps, `total` last
    from_store: bool = False  # found in the person store: JPP-Net did not run


def person_id(rgb: np.ndarray, options: ParseOptions, parser: str) -> str:
    """Content hash of the decoded photo, the parse options and `parser` (what parses it:
    graph hash, scales, mirror, provider; or the caller's own labels and keypoints)."""
    digest = hashlib.sha256()
    digest.update(f"{rgb.shape}|{rgb.dtype}|{options.key()}|{parser}|".encode())
    digest.update(memoryview(np.ascontiguousarray(rgb)).cast("B"))
    return digest.hexdigest()[:32]


def given_parse_key(labels: np.ndarray, keypoints: np.ndarray) -> str:
    """`parser` for a caller's own labels and keypoints: they replace JPP-Net."""
    digest = hashlib.sha256()
    for array in (labels, keypoints):
        digest.update(f"{array.shape}|{array.dtype}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return "given:" + digest.hexdigest()
