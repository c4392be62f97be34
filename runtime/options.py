"""The switches of a try-on, split by the step they change.

`ParseOptions` change what `TryOn.parse` makes of a person photo (and so its id);
`DressOptions` change only what `TryOn.dress` does with a parsed person and a garment.
Together they hold the seed's five predict() flags.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ParseOptions:
    need_pre: bool = True  # crop around the pose and resize to 256x192 (else only resize)
    need_bright: bool = False  # brighten the photo x1.3 first
    check_dirty: bool = False  # refuse a photo whose wrist lies inside the torso

    def key(self) -> str:
        """A stable text form, part of a parsed person's id."""
        return ";".join(f"{name}={value}" for name, value in sorted(asdict(self).items()))


@dataclass(frozen=True)
class DressOptions:
    keep_back: bool = False  # keep the photo outside the upper-clothes area
    need_dilate: bool = False  # soften that area's edge (with keep_back)


def split_flags(need_pre: bool = True, need_bright: bool = False, keep_back: bool = False,
                need_dilate: bool = False, check_dirty: bool = False) -> tuple[ParseOptions, DressOptions]:
    """The seed's five predict() flags, as the options of the two steps they belong to."""
    return ParseOptions(need_pre, need_bright, check_dirty), DressOptions(keep_back, need_dilate)
