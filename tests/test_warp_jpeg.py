"""cpvton_stage.jpeg_round_trip: cp-vton's GMM -> TOM hand-off through a JPEG file, against Pillow
doing exactly what cp-vton's test.py and TOM's dataset did."""
import cv2
import numpy as np
import pytest
from shared_data import viton_dir
from tryon.stages.cpvton import jpeg_round_trip

Image = pytest.importorskip("PIL.Image")


def cpvton_hand_off(warped_u8, folder):
    """test.py's save_images: Image.fromarray(array).save('<name>.jpg'), PIL's defaults; then TOM's
    CPDataset: Image.open(warp-cloth/<name>.jpg), which ToTensor reads as it is."""
    out = []
    for i, rgb in enumerate(warped_u8):
        path = folder / f"{i:06d}_1.jpg"
        Image.fromarray(rgb).save(path)
        picture = Image.open(path)
        assert picture.mode == "RGB"
        out.append(np.asarray(picture))
    return np.stack(out)


def _warp(rgb, seed):
    """A smooth random displacement with border replication: what GMM's warp looks like."""
    rng = np.random.default_rng(seed)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    coarse = rng.uniform(-12, 12, (2, 5, 5)).astype(np.float32)
    dx, dy = (cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse)
    return cv2.remap(rgb, xx + dx, yy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _drawn_garment():
    image = np.full((256, 192, 3), 255, np.uint8)
    stripes = np.where((np.arange(256) // 7 % 2 == 0)[:, None, None], (200, 30, 40), (20, 40, 160))
    image[50:236, 52:140] = stripes[50:236].astype(np.uint8)
    return image


def warped_cloth_like():
    garments = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((viton_dir() / "cloth").glob("*.jpg"))]
    warped = [_warp(g, seed) for seed, g in enumerate(garments + [_drawn_garment()])]
    rng = np.random.default_rng(0)
    primaries = np.zeros((256, 192, 3), np.uint8)
    primaries[:128, :96, 0] = primaries[:128, 96:, 1] = primaries[128:, :96, 2] = 255
    extremes = [primaries, np.full((256, 192, 3), 255, np.uint8), np.zeros((256, 192, 3), np.uint8),
                rng.integers(0, 256, (256, 192, 3), dtype=np.uint8)]
    return np.stack(warped + extremes)


def test_round_trip_is_pillows_bit_for_bit(tmp_path):
    warped = warped_cloth_like()
    expected = cpvton_hand_off(warped, tmp_path)
    np.testing.assert_array_equal(jpeg_round_trip(warped), expected)
    # Not the identity: the quality-75 JPEG moves the real garments by tens of grey levels.
    assert np.abs(expected[:8].astype(int) - warped[:8]).max() >= 20


def test_only_batches_of_rgb_uint8_are_taken():
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\] uint8 RGB, got float32"):
        jpeg_round_trip(np.zeros((1, 256, 192, 3), np.float32))
    with pytest.raises(ValueError, match=r"got uint8 \(256, 192, 3\)"):
        jpeg_round_trip(np.zeros((256, 192, 3), np.uint8))
