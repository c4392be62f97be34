"""The parse stage's memory: its tiles and coarse heatmaps give bit for bit what the merge
gives over the whole photo at once, and a large photo costs a bounded amount of memory."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from tryon.stages.parse import (
    PARSING_MIRROR,
    POSE_MIRROR,
    PoseHeatmaps,
    lerp,
    linear_taps,
    merge_parsing,
    merge_pose,
    merged_parsing_tiles,
    nearest_index,
    photo_batch,
    photo_to_bgr,
    pose_confidence,
    resize_bilinear,
)

SIDES = (384, 288, 480)


def whole_photo_logits(parsing, height, width):
    """The parsing merge over the whole photo at once, written as the evaluate scripts'
    order reads: each half resized to the photo's width (the mirror resized, then flipped),
    the halves added, each scale resized to the photo's height, the scales summed and
    averaged: HxWx20 float32 logits."""
    halves = parsing[0].shape[0]
    merged = None
    for logits in parsing:
        widened = lerp(logits[0], linear_taps(logits.shape[2], width), 1)
        if halves == 2:
            widened += lerp(logits[1][..., PARSING_MIRROR], linear_taps(logits.shape[2], width), 1)[:, ::-1]
        resized = lerp(widened, linear_taps(logits.shape[1], height), 0)
        merged = resized if merged is None else merged + resized
    return merged * np.float32(1.0 / (len(parsing) * halves))


def whole_photo_pose(pose, height, width):
    """The evaluate scripts' pose merge at full resolution: each scale resized with nearest
    neighbour, averaged, the mirror unswapped and flipped, the halves averaged; argmax."""
    rows = [nearest_index(p.shape[1], height) for p in pose]
    cols = [nearest_index(p.shape[2], width) for p in pose]
    heat = sum(p[0][np.ix_(r, c)] for p, r, c in zip(pose, rows, cols)) / len(pose)
    if pose[0].shape[0] == 2:
        mirrored = sum(p[1][..., POSE_MIRROR][np.ix_(r, c[::-1])] for p, r, c in zip(pose, rows, cols)) / len(pose)
        heat = (heat + mirrored) / 2
    peak = heat.reshape(-1, heat.shape[2]).argmax(axis=0)
    return heat, np.stack([peak % width, peak // width], axis=1)


def bits(array):
    return array.view(np.uint32)


# (photo size, tiles, halves): smaller than the network's grids (36-60 cells), odd sizes,
# one tile, a VITON-sized photo in bands of 80 rows; then (with the mirror only: each takes
# seconds) bands of 15 rows, two column bands (wider than BAND_COLUMNS) of one row each,
# and a tall strip.
SMALL = [((16, 16), 1), ((17, 23), 1), ((16, 20), 1), ((23, 17), 1), ((301, 203), 4)]
CASES = [(size, tiles, halves) for size, tiles in SMALL for halves in (2, 1)] + [
    ((1025, 1031), 69, 2), ((16, 20000), 32, 2), ((70001, 16), 69, 2)]


@pytest.mark.exact
@pytest.mark.parametrize("size,tiles,halves", CASES)
def test_tiled_merge_is_the_whole_photo_merge_bit_for_bit(size, tiles, halves):
    height, width = size
    rng = np.random.default_rng(height * width + halves)
    parsing = [rng.standard_normal((halves, s // 8, s // 8, 20)).astype(np.float32) for s in SIDES]
    pose = [rng.standard_normal((halves, s // 8, s // 8, 16)).astype(np.float32) for s in SIDES]

    expected = whole_photo_logits(parsing, height, width)
    tiled = np.full_like(expected, np.nan)
    count = 0
    for rows, columns, logits in merged_parsing_tiles(parsing, height, width):
        tiled[rows, columns] = logits
        count += 1
    assert count == tiles
    np.testing.assert_array_equal(bits(tiled), bits(expected))  # every pixel covered, every float equal
    np.testing.assert_array_equal(merge_parsing(parsing, height, width), expected.argmax(axis=2))

    heat, keypoints = whole_photo_pose(pose, height, width)
    grid, grid_keypoints = merge_pose(pose, height, width)
    np.testing.assert_array_equal(bits(grid.expand()), bits(heat))
    np.testing.assert_array_equal(grid_keypoints, keypoints)
    assert pose_confidence(grid, grid_keypoints) == pose_confidence(PoseHeatmaps.from_array(heat), keypoints)


@pytest.mark.exact
@pytest.mark.parametrize("height,width", [(16, 16), (17, 23), (301, 203), (1001, 777)])
def test_squares_from_the_uint8_photo_are_those_of_its_float_copy(height, width):
    photo = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    bgr = photo_to_bgr(photo)
    for side in SIDES:
        expected = np.stack([resize_bilinear(bgr, side, side, flip) for flip in (False, True)])
        np.testing.assert_array_equal(bits(photo_batch(photo, side, mirror=True)), bits(expected))


# Run in a child process so that its peak resident memory is this one call's.
PEAK_OF_ONE_PARSE = """
import json, sys
import tryon  # before NumPy: one BLAS thread, as the CLI and the service run
import numpy as np
from tryon.images import load_rgb
from tryon.stages.parse import ParseStage

def mib(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key)) / 1024

stage = ParseStage.from_dir(sys.argv[1])
stage.run(np.full((64, 48, 3), 128, np.uint8))  # ONNX Runtime's buffers for the three sizes
data = open(sys.argv[2], "rb").read()
idle = mib("VmRSS:")
try:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak (VmHWM) restarts from here
except OSError:
    pass  # the peak then counts from the start: larger, never smaller
result = stage.run(load_rgb(data))
print(json.dumps({"peak_above_idle_mb": mib("VmHWM:") - idle, "shape": result.labels.shape}))
"""


def test_a_blank_6300x6300_png_parses_within_600_mb(tiny_models_dir, tmp_path):
    """The photo decoded (114 MB), its labels (38 MB) and the merge's tiles: about 330 MB.
    The merge over the whole photo at once took 4.1 GB (logits, heatmaps and a float copy
    of the photo at full resolution)."""
    png = tmp_path / "blank.png"
    cv2.imwrite(str(png), np.full((6300, 6300, 3), 255, np.uint8))
    child = subprocess.run([sys.executable, "-c", PEAK_OF_ONE_PARSE, str(tiny_models_dir), str(png)],
                           capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    assert measured["shape"] == [6300, 6300]
    assert measured["peak_above_idle_mb"] < 600, measured
