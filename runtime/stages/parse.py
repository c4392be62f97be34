"""JPP-Net through ONNX Runtime: human parsing labels, 16 LIP keypoints and a confidence.

Reproduces LIP_JPPNet's evaluate scripts. The photo (BGR minus the LIP mean) and its
mirror are resized with TF1's bilinear rule to 384/288/480 squares; `jppnet.onnx` gives
per scale the parsing logits (already averaged over the three stages) and the stage-3
pose heatmaps. The merge resizes them back to the photo (bilinear for parsing, nearest
for pose), averages over scales, swaps left/right channels of the mirrored half, flips
it back and averages the halves. All of that is linear or a pure selection, so it is done
in the cheapest order (`merge_parsing`, `merge_pose`), and nothing of the photo's size
exists in float: a 40 MP photo costs a bounded amount of memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..models.graphs import open_jppnet
from ..models.model_dir import ModelDir
from ..models.session import SessionOptions
from ..timing import Timer

LIP_MEAN_BGR = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)
# photo_to_bgr as a table: entry v of channel c is float32(v) - mean[c], the float32
# subtraction itself, so a lookup gives the same bits at a tenth of the cost.
BGR_MINUS_MEAN = (np.arange(256, dtype=np.float32)[:, None] - LIP_MEAN_BGR).reshape(256, 1, 3)
BASE_SIZE = 384
REFERENCE_SCALES = (1.0, 0.75, 1.25)  # what LIP_JPPNet evaluates: 384, 288, 480 squares
FAST_SCALES = (1.0,)  # with mirror=False: one network pass instead of six
MIN_SIDE = 16
# Channel c of the mirrored half, seen from the unmirrored photo (left/right swapped).
PARSING_MIRROR = np.array(tuple(range(14)) + (15, 14, 17, 16, 19, 18))
POSE_MIRROR = np.array((5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10))
UNSCORED_JOINTS = (0, 1, 4, 5)  # ankles and knees: the seed's confidence ignored them
# The parsing merge's tiles: the height resize yields 20 float32 logits per pixel for at
# most TILE_PIXELS pixels at once (1.3 MB, with two temporaries of that size: they stay in
# the CPU's cache across the element-wise passes; 1 << 18 took twice as long), from the
# width resize of at most BAND_COLUMNS photo columns (144 network rows x 16384 x 20 floats:
# 189 MB). A tile holds at least one row of its band: BAND_COLUMNS <= TILE_PIXELS.
TILE_PIXELS = 1 << 14
BAND_COLUMNS = 1 << 14


@dataclass
class PoseHeatmaps:
    """The merged HxWx16 pose heatmaps, stored once per cell of the grid where they are
    constant (nearest-neighbour resizing repeats each network cell over a block of
    pixels): pixel (y, x) holds cells[row_cell[y], col_cell[x]]."""
    cells: np.ndarray  # (grid rows, grid columns, 16) float32
    row_cell: np.ndarray  # (H,) grid row of each photo row
    col_cell: np.ndarray  # (W,) grid column of each photo column

    @classmethod
    def from_array(cls, heatmaps: np.ndarray) -> "PoseHeatmaps":
        """Full-resolution HxWx16 heatmaps, each pixel its own cell."""
        return cls(heatmaps, np.arange(heatmaps.shape[0]), np.arange(heatmaps.shape[1]))

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.row_cell), len(self.col_cell), self.cells.shape[2]

    def take(self, ys, xs, joints) -> np.ndarray:
        """What heatmaps[np.ix_(ys, xs, joints)] is on the full-resolution array."""
        return self.cells[np.ix_(self.row_cell[ys], self.col_cell[xs], joints)]

    def expand(self) -> np.ndarray:
        """The full-resolution HxWx16 array (64 bytes a pixel)."""
        return self.cells[np.ix_(self.row_cell, self.col_cell)]


@dataclass
class ParseResult:
    labels: np.ndarray  # HxW uint8, LIP labels 0..19
    keypoints: np.ndarray  # (16, 2) int64 (x, y), LIP joint order
    heatmaps: PoseHeatmaps  # the merged pose heatmaps, HxWx16 on their coarse grid
    confidence: float
    timings_ms: dict[str, float] = field(default_factory=dict)


def linear_taps(in_size: int, out_size: int, start: int = 0, stop: int | None = None):
    """TF1 bilinear sampling (align_corners=False, half_pixel_centers=False), computed in
    float32 like TF's kernel: source = dst * in/out, lower/upper neighbours and weight,
    for the output positions start..stop-1 (all by default)."""
    scale = np.float32(in_size) / np.float32(out_size)
    source = np.arange(start, out_size if stop is None else stop).astype(np.float32) * scale
    lower = np.floor(source)
    upper = np.minimum(np.ceil(source).astype(np.int64), in_size - 1)
    return lower.astype(np.int64), upper, source - lower


def nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """TF1 resize_nearest_neighbor (align_corners=False): floor(dst * in/out) in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    source = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(source, in_size - 1)


def photo_to_bgr(rgb: np.ndarray) -> np.ndarray:
    """What JPP-Net was trained on: BGR float32 minus the LIP mean, not scaled to [0, 1]
    (from a uint8 RGB photo)."""
    return cv2.LUT(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), BGR_MINUS_MEAN)


def photo_batch(rgb: np.ndarray, side: int, mirror: bool) -> np.ndarray:
    """One network input: the uint8 RGB photo (and its mirror) as a side x side BGR square."""
    flips = (False, True) if mirror else (False,)
    return np.stack([resize_bilinear(rgb, side, side, flip, photo_to_bgr) for flip in flips])


def mix(low: np.ndarray, high: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """TF1's linear interpolation in its arithmetic order, low + (high - low) * weight,
    written into `high`. Element-wise float32 operations, each rounded once by IEEE 754:
    the same bits for any part of an image and on any CPU."""
    np.subtract(high, low, out=high)
    high *= weight
    high += low
    return high


def lerp(array: np.ndarray, taps, axis: int, convert=lambda samples: samples) -> np.ndarray:
    """TF1's bilinear resize along one axis; only the samples it reads go through `convert`."""
    lower, upper, frac = taps
    weight = frac.reshape((-1,) + (1,) * (array.ndim - axis - 1))
    return mix(convert(array.take(lower, axis=axis)), convert(array.take(upper, axis=axis)), weight)


def resize_bilinear(image: np.ndarray, out_h: int, out_w: int, flip: bool = False,
                    convert=lambda samples: samples) -> np.ndarray:
    """TF1 resize_bilinear of an HxWxC array, in TF's arithmetic order (width first). flip=True
    resizes the mirror without making it. Only the pixels read go through `convert`: with
    photo_to_bgr, a uint8 photo gives its converted copy's floats without that copy."""
    top, bottom, frac = linear_taps(image.shape[0], out_h)
    columns = linear_taps(image.shape[1], out_w)
    if flip:
        columns = (image.shape[1] - 1 - columns[0], image.shape[1] - 1 - columns[1], columns[2])
    # Two takes (rows, then columns of those): several times faster than image[np.ix_(rows, columns)].
    return mix(lerp(image.take(top, axis=0), columns, 1, convert),
               lerp(image.take(bottom, axis=0), columns, 1, convert), frac[:, None, None])


def bands(size: int, most: int) -> list[slice]:
    """0..size-1 in the fewest nearly equal slices of at most `most`."""
    count = -(-size // most)
    return [slice(size * i // count, size * (i + 1) // count) for i in range(count)]


def merge_parsing(parsing: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Per-scale parsing logits [B, h, w, 20] (B = 2: photo and mirror, or 1) -> labels HxW.

    Bilinear resizing is linear, so the mirrored half is channel-swapped and resized along the
    width with the mirrored taps (= resize then flip) at the network's rows, added to the
    direct half; then each scale's rows are resized to the photo's and the scales summed.
    The photo is merged in tiles, so no float array of its size exists; every operation is
    element-wise (no BLAS product, whose blocking varies with shapes and CPUs), so the tiles
    give the whole-photo merge bit for bit, on any CPU (tests/test_parse_memory.py)."""
    labels = np.empty((height, width), np.uint8)
    for rows, columns, logits in merged_parsing_tiles(parsing, height, width):
        labels[rows, columns] = logits.argmax(axis=2)
    return labels


def merged_parsing_tiles(parsing: list[np.ndarray], height: int, width: int):
    """(rows, columns, the merged logits of those photo pixels) for each tile of the photo:
    the mean over scales and halves."""
    weight = np.float32(1.0 / (len(parsing) * parsing[0].shape[0]))
    for columns in bands(width, BAND_COLUMNS):
        widened = [resize_width(logits, width, columns) for logits in parsing]
        for rows in bands(height, TILE_PIXELS // (columns.stop - columns.start)):
            merged = None
            for scale in widened:
                resized = lerp(scale, linear_taps(len(scale), height, rows.start, rows.stop), 0)
                merged = resized if merged is None else np.add(merged, resized, out=merged)
            merged *= weight
            yield rows, columns, merged


def resize_width(logits: np.ndarray, width: int, columns: slice) -> np.ndarray:
    """One scale's logits [B, h, w, 20] resized along the width to the photo's `columns`,
    the mirrored half (channels swapped, mirrored taps) added: (h, len(columns), 20)."""
    summed = lerp(logits[0], linear_taps(logits.shape[2], width, columns.start, columns.stop), 1)
    if logits.shape[0] == 2:
        lower, upper, frac = linear_taps(logits.shape[2], width, width - columns.stop, width - columns.start)
        summed += lerp(logits[1][..., PARSING_MIRROR], (lower[::-1], upper[::-1], frac[::-1]), 1)
    return summed


def _runs(keys: np.ndarray):
    """Columns of `keys` (k, n) that repeat their left neighbour form runs: (start of each
    run, run number of every position)."""
    new = np.ones(keys.shape[1], dtype=bool)
    new[1:] = np.any(keys[:, 1:] != keys[:, :-1], axis=0)
    return np.flatnonzero(new), np.cumsum(new) - 1


def merge_pose(pose: list[np.ndarray], height: int, width: int):
    """Per-scale stage-3 heatmaps [B, h, w, 16] -> (merged PoseHeatmaps, keypoints (16, 2) x/y).

    Nearest-neighbour resizing repeats source cells, so the merge is computed once per
    cell of the grid where no scale's (or mirrored scale's) source index changes. The
    first maximum of that grid in row-major order is the first maximum of the full map,
    which is what argmax over the full map returns."""
    rows = np.stack([nearest_index(p.shape[1], height) for p in pose])
    cols = np.stack([nearest_index(p.shape[2], width) for p in pose])
    row_starts, row_run = _runs(rows)
    col_starts, col_run = _runs(np.concatenate([cols, cols[:, ::-1]]))
    merged = sum(p[0][np.ix_(r[row_starts], c[col_starts])] for p, r, c in zip(pose, rows, cols)) / len(pose)
    if pose[0].shape[0] == 2:
        mirrored = sum(p[1][..., POSE_MIRROR][np.ix_(r[row_starts], c[::-1][col_starts])]
                       for p, r, c in zip(pose, rows, cols)) / len(pose)
        merged = (merged + mirrored) / 2
    peak = merged.reshape(-1, merged.shape[2]).argmax(axis=0)
    keypoints = np.stack([col_starts[peak % len(col_starts)], row_starts[peak // len(col_starts)]], axis=1)
    return PoseHeatmaps(merged, row_run, col_run), keypoints


def pose_confidence(heatmaps: PoseHeatmaps, keypoints: np.ndarray) -> float:
    """The seed's confidence with its bugs fixed: for each joint except ankles and knees,
    the mean of the 3x3 heatmap neighbourhood of its peak (9 terms over 9; at the border
    the indices are clipped to the image); the minimum over those joints."""
    height, width, joints = heatmaps.shape
    scores = []
    for joint in range(joints):
        if joint in UNSCORED_JOINTS:
            continue
        x, y = keypoints[joint]
        ys = np.clip(np.arange(y - 1, y + 2), 0, height - 1)
        xs = np.clip(np.arange(x - 1, x + 2), 0, width - 1)
        scores.append(float(heatmaps.take(ys, xs, [joint]).mean()))
    return min(scores)


def check_photo(rgb) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{type(rgb).__name__}" + (f" {rgb.dtype} of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else "")
        raise InputError(f"the parse stage takes an HxWx3 uint8 RGB array; got {got}")
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InputError(f"the photo is {rgb.shape[0]}x{rgb.shape[1]}; "
                         f"the parse stage needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return rgb


class ParseStage:
    """JPP-Net over `scales` x (photo, mirror); the defaults reproduce LIP_JPPNet exactly."""

    def __init__(self, session, scales=REFERENCE_SCALES, mirror: bool = True, base: int = BASE_SIZE):
        self.sides = tuple(int(base * s) for s in scales)
        if not self.sides or min(self.sides) < MIN_SIDE:
            raise InputError(f"scales {scales!r} of base {base}: need at least one, each giving a side >= {MIN_SIDE}")
        self.session = session
        self.mirror = mirror

    def identity(self) -> str:
        """How this stage runs JPP-Net, as far as it changes the answer (with the graph's hash,
        part of a parsed person's id)."""
        return f"sides={self.sides};mirror={self.mirror};providers={','.join(self.session.get_providers())}"

    @classmethod
    def from_dir(cls, path: str | Path, options: SessionOptions = SessionOptions(),
                 scales=REFERENCE_SCALES, mirror: bool = True, precision: str = "fp32") -> "ParseStage":
        return cls(open_jppnet(ModelDir.open(path), options, precision)[1], scales, mirror)

    def run(self, rgb: np.ndarray) -> ParseResult:
        height, width = check_photo(rgb).shape[:2]
        timer = Timer()
        with timer("preprocess"):
            batches = [photo_batch(rgb, side, self.mirror) for side in self.sides]
        outputs = []  # (parsing, pose) per side
        for side, batch in zip(self.sides, batches):
            with timer(f"jppnet_{side}"):
                outputs.append(self.session.run(["parsing", "pose"], {"image": batch}))
        parsing, pose = map(list, zip(*outputs))
        with timer("merge"):
            labels = merge_parsing(parsing, height, width)
            heatmaps, keypoints = merge_pose(pose, height, width)
            confidence = pose_confidence(heatmaps, keypoints)
        return ParseResult(labels, keypoints, heatmaps, confidence, timer.ms)
