"""The switches of a try-on, split by the step they change.

`ParseOptions` change what `TryOn.parse` makes of a person photo (and so its id);
`DressOptions` change only what `TryOn.dress` does with a parsed person and a garment.
Together they hold the seed's five predict() flags.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import InputError
from .images import JPEG_DCTS


@dataclass(frozen=True)
class ParseOptions:
    need_pre: bool = True  # crop around the pose and resize to 256x192 (else only resize)
    need_bright: bool = False  # brighten the photo x1.3 first
    check_dirty: bool = False  # refuse a photo whose wrist lies inside the torso
    # "fast": decode a JPEG photo as LIP_JPPNet's TensorFlow reader did (fast integer DCT),
    # instead of the seed's accurate decode (PIL, OpenCV).
    jpeg_dct: str = "accurate"
    # Whose person this is: the same photo under two owners gets two ids, so no owner finds,
    # reads or learns of another's persons. The service sets it per API key (a digest, never the key).
    owner: str = ""

    def __post_init__(self):
        if self.jpeg_dct not in JPEG_DCTS:
            raise InputError(f"jpeg_dct {self.jpeg_dct!r} is not one of {', '.join(JPEG_DCTS)}")

    def key(self) -> str:
        """A stable text form, part of a parsed person's id (without an owner: the ids of before)."""
        return options_key(self, skip_empty=("owner",))


@dataclass(frozen=True)
class DressOptions:
    keep_back: bool = False  # keep the photo outside the upper-clothes area
    need_dilate: bool = False  # soften that area's edge (with keep_back)
    # Pass the warped garment through a quality-75 JPEG on its way to TOM, as cp-vton's test
    # pipeline did (it saved the warp as a file), instead of GrayXu's in-memory uint8 cast.
    warp_jpeg: bool = False

    def key(self) -> str:
        """A stable text form, part of where a dressed try-on is kept."""
        return options_key(self)


def options_key(options, skip_empty=()) -> str:
    """Every field as name=value, sorted by name; the fields in `skip_empty` only when set."""
    return ";".join(f"{name}={value}" for name, value in sorted(asdict(options).items())
                    if name not in skip_empty or value)


def split_flags(need_pre: bool = True, need_bright: bool = False, keep_back: bool = False,
                need_dilate: bool = False, check_dirty: bool = False) -> tuple[ParseOptions, DressOptions]:
    """The seed's five predict() flags, as the options of the two steps they belong to."""
    return ParseOptions(need_pre, need_bright, check_dirty), DressOptions(keep_back, need_dilate)
