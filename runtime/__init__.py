"""tryon: a person photo and a garment photo in, the person wearing the garment out, with
ONNX Runtime, NumPy and OpenCV only (JPP-Net, then CP-VTON's GMM and TOM).

    from tryon import TryOn

    tryon = TryOn.from_dir("models_onnx")
    parsed = tryon.parse("person.jpg")                  # JPP-Net once per photo
    for outcome in tryon.dress(parsed, ["shirt.jpg", "dress.png"]):
        ...                                              # a result, or why that garment failed

The layout (ARCHITECTURE.md): `pipeline` (TryOn) over `stages/` (parse, cpvton and the seed's
rules), `models/` (the exported files, their manifest, sessions), `store/` (parsed persons);
`catalogue/`, `bench/`, `serve/` and `cli/` run pipelines.
"""
import os

# NumPy's OpenBLAS keeps its worker threads spinning for a while after every product;
# on a small machine they then steal the cores from ONNX Runtime's next network (GMM ran
# 2x slower right after the JPP-Net merge). Our NumPy work is small, so one BLAS thread
# loses nothing. Only effective before NumPy is first imported; a caller's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import (BadRequest, InputError, ModelMismatchError, ModelsMissingError, NotFound,  # noqa: E402
                     RuntimeSetupError, StoreUnavailable, TryonError, Unavailable)
from .images import ImageError, TooManyPixels, UnsupportedFormat  # noqa: E402
from .options import DressOptions, ParseOptions  # noqa: E402
from .parsed_person import ParsedPerson  # noqa: E402
from .pipeline import DRESS_BATCH, PipelineSettings, TryOn, TryOnResult  # noqa: E402
from .store import StoreSettings, open_store  # noqa: E402

__all__ = [
    "TryOn", "TryOnResult", "PipelineSettings", "DRESS_BATCH", "ParseOptions", "DressOptions", "ParsedPerson",
    "StoreSettings", "open_store",
    "TryonError", "InputError", "ImageError", "UnsupportedFormat", "TooManyPixels", "BadRequest", "NotFound",
    "Unavailable", "StoreUnavailable", "ModelsMissingError", "ModelMismatchError", "RuntimeSetupError",
]
