"""jpeg_dct="fast": what TensorFlow's decode_jpeg gives (LIP_JPPNet's reader), bit for bit.

Checked against tf.io.decode_jpeg itself on the real VITON photos and on generated JPEGs of
every subsampling, progressive, with restart markers, grayscale and CMYK.
"""
import io
import struct
import sys

import cv2
import numpy as np
import pytest
from shared_data import viton_dir
from tryon.errors import RuntimeSetupError
from tryon.images import ImageError, decode, encode, load_rgb

pytestmark = pytest.mark.exact

tf = pytest.importorskip("tensorflow")


def tensorflow_decode(data: bytes) -> np.ndarray:
    """What LIP_JPPNet's reader did: tf.image.decode_jpeg(contents, channels=3), defaults otherwise."""
    return tf.io.decode_jpeg(data, channels=3).numpy()


def _photo(h, w):
    """Photo-like content: gradients, texture, noise and a hard-edged block, so every DCT band is used."""
    rng = np.random.default_rng(h * w)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([128 + 100 * np.sin(xx / 7 + yy / 11), 128 + 90 * np.cos(yy / 5),
                      128 + 80 * np.sin(xx * yy / 300)], -1) + rng.normal(0, 20, (h, w, 3))
    image[h // 3:h // 2, w // 4:w // 2] = (250, 20, 30)
    return np.clip(image, 0, 255).astype(np.uint8)


def _pil_jpeg(image, mode=None, **options):
    from PIL import Image, ImageFile

    ImageFile.MAXBLOCK = 1 << 22  # Pillow's default buffer is too small for some progressive saves
    out = io.BytesIO()
    picture = Image.fromarray(image)
    (picture.convert(mode) if mode else picture).save(out, "JPEG", **options)
    return out.getvalue()


def _opencv_jpeg(image, *params):
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(params))[1].tobytes()


def _without_adobe_marker(jpeg):
    """The same CMYK file without its APP14 Adobe segment: libjpeg then takes the inks as not inverted."""
    start = jpeg.index(b"\xff\xee")
    assert jpeg[start + 4:start + 9] == b"Adobe"
    return jpeg[:start] + jpeg[start + 2 + struct.unpack(">H", jpeg[start + 2:start + 4])[0]:]


def _generated():
    for h, w in ((256, 192), (101, 77)):
        photo = _photo(h, w)
        for sampling in (411, 420, 422, 440, 444):
            flag = getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{sampling}")
            yield f"{h}x{w} {sampling}", _opencv_jpeg(photo, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, flag)
        for subsampling in (0, 1, 2):
            yield (f"{h}x{w} progressive {subsampling}",
                   _pil_jpeg(photo, quality=90, subsampling=subsampling, progressive=True))
        yield f"{h}x{w} restart markers", _opencv_jpeg(photo, cv2.IMWRITE_JPEG_RST_INTERVAL, 3)
        yield f"{h}x{w} gray", _pil_jpeg(photo, "L")
    cmyk = _pil_jpeg(_photo(64, 48), "CMYK", quality=60)
    yield "CMYK, Adobe marker (inverted inks)", cmyk
    yield "CMYK, no Adobe marker", _without_adobe_marker(cmyk)


GENERATED = dict(_generated())


def _viton_photos():
    return sorted(viton_dir().glob("*/*.jpg"))


def test_real_photos_decode_as_tensorflow_does():
    photos = _viton_photos()
    assert len(photos) >= 8
    for path in photos:
        expected = tensorflow_decode(path.read_bytes())
        np.testing.assert_array_equal(load_rgb(path, jpeg_dct="fast"), expected, err_msg=path.name)
        # ... and the default (accurate DCT) is what the fast one is not: levels apart on many pixels.
        accurate = load_rgb(path).astype(int)
        assert np.abs(accurate - expected).max() >= 2 and (accurate != expected).mean() > 0.1, path.name


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_jpegs_decode_as_tensorflow_does(name):
    data = GENERATED[name]
    np.testing.assert_array_equal(decode(data, jpeg_dct="fast"), tensorflow_decode(data))


def test_exif_orientation_is_applied_to_tensorflow_pixels():
    """TF ignores EXIF; we keep TF's pixel values and show them upright, as the default decode does."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    data = _pil_jpeg(_photo(40, 64), exif=exif.tobytes())
    np.testing.assert_array_equal(decode(data, jpeg_dct="fast"), np.rot90(tensorflow_decode(data), -1))


def test_other_formats_ignore_the_option():
    png = encode(_photo(20, 30), ".png")
    np.testing.assert_array_equal(decode(png, jpeg_dct="fast"), decode(png))


def test_bad_option_and_bad_data_are_refused():
    with pytest.raises(ValueError, match="jpeg_dct must be one of accurate, fast, got 'tf'"):
        decode(GENERATED["256x192 420"], jpeg_dct="tf")
    data = GENERATED["256x192 420"]
    with pytest.raises(ImageError, match="corrupt or truncated"):
        decode(data[:len(data) // 2], jpeg_dct="fast")


def test_missing_decoder_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # makes `import simplejpeg` fail
    with pytest.raises(RuntimeSetupError, match=r"simplejpeg.*tryon-onnx\[fastdct\]"):
        decode(GENERATED["256x192 420"], jpeg_dct="fast")
    assert decode(GENERATED["256x192 420"]).shape == (256, 192, 3)  # the default needs nothing more
