"""Whether this machine's memory holds `tryon serve --max-concurrent N` requests at once.

Measured on full-size models with photos at the pixel limit (images.MAX_PIXELS, 40 MP),
each figure the peak above a warm server: one request with RGB photos 0.35 GB (the photo,
its labels and the parse merge's tiles); each further concurrent one also 0.4 GB for its
own JPP-Net buffers; the most, 0.75 GB, a 16-bit RGBA PNG person photo and garment
(their decode converts in bands of rows; converted whole it took 1.63 GB).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError

GB = 2**30
REQUEST_PEAK_BYTES = int(1.2 * GB)  # one request at 40 MP: the worst case above and its JPP-Net buffers
IDLE_BYTES = int(1.3 * GB)  # a full-size fp32 server after its first request (1.27 GB measured)
MEMINFO = Path("/proc/meminfo")


def available_bytes(meminfo: Path = MEMINFO) -> int | None:
    """The kernel's estimate of memory available to new work; None where it does not say."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    kib = [int(line.split()[1]) for line in lines if line.startswith("MemAvailable:")]
    return kib[0] * 1024 if kib else None


def check_room_for(max_concurrent: int, meminfo: Path = MEMINFO) -> None:
    """Refuse a concurrency above 1 whose worst case (every slot decoding the largest photo)
    needs more memory than the machine has available; one request is always allowed."""
    available = available_bytes(meminfo)
    needed = IDLE_BYTES + max_concurrent * REQUEST_PEAK_BYTES
    if max_concurrent == 1 or available is None or needed <= available:
        return
    fits = max(1, (available - IDLE_BYTES) // REQUEST_PEAK_BYTES)
    raise InputError(f"--max-concurrent {max_concurrent} can need {needed / GB:.1f} GB ({REQUEST_PEAK_BYTES / GB:.1f} GB "
                     f"per request for 40 MP photos, {IDLE_BYTES / GB:.1f} GB for the models) and this machine has "
                     f"{available / GB:.1f} GB available: use --max-concurrent {fits} or less")
