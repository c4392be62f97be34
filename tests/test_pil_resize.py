"""runtime.pil_resize against the installed Pillow, bit for bit on 8-bit images."""
import numpy as np
import pytest
from PIL import Image
from tryon.stages.pil_resize import resize_float, resize_uint8

pytestmark = pytest.mark.exact

# The pipeline's own round trips (agnostic shape, keep_back's dilated mask) and their halves.
PIPELINE = [((192, 256), (12, 16)), ((12, 16), (192, 256)), ((192, 256), (19, 25)), ((19, 25), (192, 256))]


def pillow(image: np.ndarray, size) -> np.ndarray:
    mode = "F" if image.dtype == np.float32 else "L"
    return np.array(Image.fromarray(image, mode=mode).resize(size, Image.BILINEAR))


def random_sizes(seed: int, count: int, height_grows: bool):
    """(in, out) sizes; height_grows keeps Pillow 13 on its classic horizontal-first order."""
    rng = np.random.default_rng(seed)
    sizes = []
    for _ in range(count):
        iw, ih, ow = (int(v) for v in rng.integers(1, 300, 3))
        oh = int(rng.integers(ih, 400)) if height_grows else int(rng.integers(1, 300))
        sizes.append(((iw, ih), (ow, oh)))
    return sizes


def test_uint8_pipeline_round_trips_are_bit_identical():
    rng = np.random.default_rng(0)
    silhouette = np.zeros((256, 192), np.uint8)
    silhouette[40:230, 50:140] = 255
    for image in (silhouette, rng.integers(0, 256, (256, 192), dtype=np.uint8)):
        small = resize_uint8(image, (12, 16))
        assert np.array_equal(small, pillow(image, (12, 16)))
        assert np.array_equal(resize_uint8(small, (192, 256)), pillow(pillow(image, (12, 16)), (192, 256)))
        mid = resize_uint8(image, (19, 25))
        assert np.array_equal(mid, pillow(image, (19, 25)))
        assert np.array_equal(resize_uint8(mid, (192, 256)), pillow(pillow(image, (19, 25)), (192, 256)))


@pytest.mark.parametrize("sizes", [PIPELINE + random_sizes(1, 60, height_grows=True)])
def test_uint8_matches_pillow_on_many_sizes(sizes):
    rng = np.random.default_rng(2)
    for (iw, ih), out in sizes:
        image = rng.integers(0, 256, (ih, iw), dtype=np.uint8)
        binary = np.where(image > 127, 255, 0).astype(np.uint8)
        for img in (image, binary):
            assert np.array_equal(resize_uint8(img, out), pillow(img, out)), ((iw, ih), out)


def test_uint8_single_axis_resizes_match_pillow():
    rng = np.random.default_rng(3)
    for _ in range(40):
        iw, ih, n = (int(v) for v in rng.integers(1, 300, 3))
        image = rng.integers(0, 256, (ih, iw), dtype=np.uint8)
        for out in ((n, ih), (iw, n)):
            assert np.array_equal(resize_uint8(image, out), pillow(image, out)), ((iw, ih), out)


def test_float_matches_pillow_on_many_sizes():
    rng = np.random.default_rng(4)
    for (iw, ih), out in PIPELINE + random_sizes(5, 60, height_grows=False):
        image = (rng.random((ih, iw)) * 255).astype(np.float32)
        got = resize_float(image, out)
        assert got.dtype == np.float32
        assert np.abs(got - pillow(image, out)).max() <= 1e-4, ((iw, ih), out)


def test_same_size_is_a_copy_and_bad_inputs_are_refused():
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    same = resize_uint8(image, (4, 3))
    assert np.array_equal(same, image) and same is not image
    with pytest.raises(ValueError, match="2-D uint8"):
        resize_uint8(image.astype(np.float32), (2, 2))
    with pytest.raises(ValueError, match="2-D float32"):
        resize_float(image, (2, 2))
    with pytest.raises(ValueError, match="positive"):
        resize_uint8(image, (0, 2))
