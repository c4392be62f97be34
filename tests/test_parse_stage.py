"""ParseStage: NumPy resizes and merges against TensorFlow's ops, and the whole stage
against the TensorFlow reference inference (reduced network, all scales and the mirror)."""
import numpy as np
import pytest
import tensorflow as tf
from tryon.errors import ModelsMissingError
from tryon.export.jppnet_export import export_jppnet, validation_photo
from tryon.export.jppnet_graph import REDUCED
from tryon.export.jppnet_reference import run_reference
from tryon.export.jppnet_synth import CHECKPOINT_DIR, synthetic_weights, write_synthetic
from tryon.models.model_dir import ModelDir
from tryon.stages.parse import (
    FAST_SCALES,
    LIP_MEAN_BGR,
    PARSING_MIRROR,
    POSE_MIRROR,
    ParseStage,
    PoseHeatmaps,
    check_photo,
    lerp,
    linear_taps,
    merge_parsing,
    merge_pose,
    nearest_index,
    photo_to_bgr,
    pose_confidence,
    resize_bilinear,
)

SEED = 5
# (input HxW, output HxW): the network's grids to photo sizes and back, both ways.
SIZE_PAIRS = [((48, 48), (384, 384)), ((48, 37), (301, 203)), ((36, 36), (288, 288)), ((60, 60), (480, 480)),
              ((101, 77), (7, 11)), ((7, 11), (101, 77))]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parse_stage")
    written = write_synthetic(folder / "checkpoints", seed=SEED, config=REDUCED, formats=("ckpt",))
    export_jppnet(written["jppnet_ckpt"], folder / "models", config=REDUCED)
    return folder / "models"


@pytest.fixture(scope="session")
def weights():
    return synthetic_weights(REDUCED, seed=SEED)


@pytest.mark.parametrize("in_size", [(48, 48), (301, 203), (36, 60)])
@pytest.mark.parametrize("out_size", [(384, 384), (288, 288), (480, 480), (301, 203), (17, 9)])
@pytest.mark.parametrize("flip", [False, True])
def test_resize_bilinear_matches_tf1(in_size, out_size, flip):
    image = np.random.default_rng(0).uniform(-120, 140, (*in_size, 3)).astype(np.float32)
    source = image[:, ::-1] if flip else image
    expected = tf.compat.v1.image.resize_bilinear(source[None], out_size).numpy()[0]
    np.testing.assert_allclose(resize_bilinear(image, *out_size, flip=flip), expected, atol=2e-5)


@pytest.mark.exact
@pytest.mark.parametrize("shape", [(256, 1, 3), (1, 1, 3), (97, 61, 3), (480, 480, 3)])
def test_photo_to_bgr_gives_the_bits_of_the_float32_subtraction(shape):
    """The table lookup against the arithmetic it stands for: every uint8 value in every
    channel, and photos of odd shapes, bit for bit."""
    rgb = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    if shape == (256, 1, 3):
        rgb = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=-1)[:, None] ^ np.array([0, 85, 170], np.uint8)
    bgr = photo_to_bgr(rgb)
    expected = rgb[:, :, ::-1].astype(np.float32) - LIP_MEAN_BGR
    assert bgr.dtype == np.float32 and bgr.shape == shape and bgr.tobytes() == np.ascontiguousarray(expected).tobytes()


@pytest.mark.parametrize("in_size,out_size", SIZE_PAIRS)
def test_lerp_is_tf1_bilinear_along_one_axis(in_size, out_size):
    values = np.random.default_rng(1).standard_normal((in_size[0], in_size[1], 4)).astype(np.float32)
    expected = tf.compat.v1.image.resize_bilinear(values[None], out_size).numpy()[0]
    widened = lerp(values, linear_taps(in_size[1], out_size[1]), 1)
    np.testing.assert_allclose(lerp(widened, linear_taps(in_size[0], out_size[0]), 0), expected, atol=1e-5)


@pytest.mark.parametrize("in_size,out_size", SIZE_PAIRS + [((60, 36), (1000, 999))])
def test_nearest_index_matches_tf1_resize_nearest_neighbor(in_size, out_size):
    ids = np.arange(in_size[0] * in_size[1], dtype=np.float32).reshape(1, *in_size, 1)
    resized = tf.compat.v1.image.resize_nearest_neighbor(ids, out_size).numpy()[0, :, :, 0].astype(np.int64)
    rows, cols = nearest_index(in_size[0], out_size[0]), nearest_index(in_size[1], out_size[1])
    np.testing.assert_array_equal(rows[:, None] * in_size[1] + cols[None, :], resized)


def _tf_unmirror(batch, order):
    head, tail = tf.unstack(batch, num=2, axis=0)
    tail = tf.reverse(tf.stack([tail[:, :, c] for c in order], axis=2), [1])
    return tf.reduce_mean(tf.stack([head, tail]), axis=0)


def _tf_merge(parsing, pose, height, width):
    """The evaluate scripts' merge ops on given network outputs."""
    size = [height, width]
    logits = tf.reduce_mean(tf.stack([tf.compat.v1.image.resize_bilinear(p, size) for p in parsing]), axis=0)
    heat = tf.reduce_mean(tf.stack([tf.compat.v1.image.resize_nearest_neighbor(p, size) for p in pose]), axis=0)
    if parsing[0].shape[0] == 2:
        logits, heat = _tf_unmirror(logits, PARSING_MIRROR), _tf_unmirror(heat, POSE_MIRROR)
    else:
        logits, heat = logits[0], heat[0]
    return tf.argmax(logits, axis=2).numpy(), heat.numpy()


def _outputs(rng, sides, halves, channels):
    return [rng.standard_normal((halves, s // 8, s // 8, channels)).astype(np.float32) for s in sides]


@pytest.mark.exact
@pytest.mark.parametrize("height,width", [(301, 203), (200, 390), (17, 16)])
@pytest.mark.parametrize("halves", [2, 1])
def test_merges_match_the_evaluate_scripts(height, width, halves):
    rng = np.random.default_rng(height + halves)
    parsing = _outputs(rng, (384, 288, 480), halves, 20)
    pose = _outputs(rng, (384, 288, 480), halves, 16)
    labels_tf, heat_tf = _tf_merge(parsing, pose, height, width)
    labels = merge_parsing(parsing, height, width)
    heatmaps, keypoints = merge_pose(pose, height, width)
    assert labels.dtype == np.uint8 and np.mean(labels == labels_tf) >= 0.9999
    np.testing.assert_allclose(heatmaps.expand(), heat_tf, atol=1e-6)
    flat = heat_tf.reshape(-1, 16).argmax(axis=0)
    np.testing.assert_array_equal(keypoints, np.stack([flat % width, flat // width], axis=1))


def test_mirrored_half_swaps_left_and_right_parts():
    """A left arm (14) seen in the mirror at column c is a right arm (15) at W-1-c."""
    parsing = np.zeros((2, 6, 8, 20), np.float32)
    parsing[1, :, 0, 14] = 10  # first column of the mirrored image
    labels = merge_parsing([parsing], 48, 64)
    assert (labels[:, -1] == 15).all() and (labels[:, 0] == 0).all()


def test_mirrored_half_swaps_joints():
    pose = np.zeros((2, 6, 8, 16), np.float32)
    pose[1, 2, 1, 0] = 5  # right ankle found in the mirror -> left ankle (5) of the photo
    pose[1, 4, 3, 8] = 5  # the neck stays the neck
    heatmaps, keypoints = merge_pose([pose], 48, 64)
    assert heatmaps.shape == (48, 64, 16)
    heatmaps = heatmaps.expand()
    assert heatmaps[:, :, 0].max() == 0 and heatmaps[:, :, 5].max() == pytest.approx(2.5)
    assert tuple(keypoints[5]) == (64 - 1 - 15, 16)  # mirrored cell 1 covers columns 8..15
    assert tuple(keypoints[8]) == (64 - 1 - 31, 32)


def test_keypoints_take_the_first_maximum_like_argmax():
    pose = np.ones((2, 6, 8, 16), np.float32)
    heatmaps, keypoints = merge_pose([pose, np.ones((2, 5, 5, 16), np.float32)], 30, 31)
    assert (keypoints == 0).all() and np.allclose(heatmaps.expand(), 1)


def test_confidence_is_the_smallest_3x3_mean_over_the_upper_body_joints():
    heat = np.zeros((20, 30, 16), np.float32)
    keypoints = np.tile([[10, 10]], (16, 1))
    heat[9:12, 9:12, :] = 0.5
    heat[10, 10, :] = 1.4  # the peak: mean of the nine = (8 * 0.5 + 1.4) / 9 = 0.6
    heat[9:12, 9:12, 7] = 0.3  # thorax is the weakest of the scored joints
    heat[9:12, 9:12, [0, 1, 4, 5]] = 0.0  # ankles and knees do not count
    heatmaps = PoseHeatmaps.from_array(heat)  # a view: the edits below show through
    assert pose_confidence(heatmaps, keypoints) == pytest.approx(0.3)
    heat[9:12, 9:12, 7] = 0.5
    assert pose_confidence(heatmaps, keypoints) == pytest.approx(0.5)
    heat[10, 10, 7] = 1.4
    assert pose_confidence(heatmaps, keypoints) == pytest.approx(0.6)


def test_confidence_clips_the_neighbourhood_at_the_border():
    heat = np.zeros((20, 30, 16), np.float32)
    heat[0, 0, :] = 0.9
    heat[0, 1, :] = heat[1, 0, :] = heat[1, 1, :] = 0.1
    # Corner (0, 0): rows and columns {0, 0, 1} -> 0.9 four times, 0.1 five times.
    heatmaps = PoseHeatmaps.from_array(heat)
    assert pose_confidence(heatmaps, np.zeros((16, 2), np.int64)) == pytest.approx((4 * 0.9 + 5 * 0.1) / 9)
    heat[19, 29, :] = 0.9
    assert pose_confidence(heatmaps, np.tile([[29, 19]], (16, 1))) == pytest.approx(4 * 0.9 / 9)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((40, 40, 3), np.float32), "HxWx3 uint8"),
    (np.zeros((40, 40), np.uint8), "HxWx3 uint8"),
    (np.zeros((40, 40, 4), np.uint8), "HxWx3 uint8"),
    ([[0, 0, 0]], "got list"),
    (np.zeros((8, 300, 3), np.uint8), "at least 16x16"),
])
def test_bad_photos_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        check_photo(bad)


def test_bad_scales_are_refused():
    with pytest.raises(ValueError, match="scales"):
        ParseStage(session=None, scales=())
    with pytest.raises(ValueError, match="side >= 16"):
        ParseStage(session=None, scales=(0.01,))


def test_from_dir_without_export_says_what_to_do(tmp_path):
    with pytest.raises(ModelsMissingError, match="tryon export"):
        ParseStage.from_dir(tmp_path)


@pytest.mark.parametrize("scales,mirror", [((1.0, 0.75, 1.25), True), (FAST_SCALES, False)])
def test_parse_stage_matches_the_tensorflow_reference(models, weights, scales, mirror):
    photo = validation_photo(301, 203)
    result = ParseStage.from_dir(models, scales=scales, mirror=mirror).run(photo)
    reference = run_reference(weights, photo, REDUCED, scales=scales, mirror=mirror)
    assert result.labels.shape == (301, 203) and result.heatmaps.shape == (301, 203, 16)
    assert np.mean(result.labels == reference.labels) >= 0.999
    np.testing.assert_array_equal(result.keypoints, reference.keypoints)
    np.testing.assert_allclose(result.heatmaps.expand(), reference.heatmaps, atol=1e-4 * np.abs(reference.heatmaps).max())
    expected = pose_confidence(PoseHeatmaps.from_array(reference.heatmaps), reference.keypoints)
    assert result.confidence == pytest.approx(expected, abs=1e-4)
    sides = [f"jppnet_{int(384 * s)}" for s in scales]
    assert list(result.timings_ms) == ["preprocess", *sides, "merge"]
    assert all(ms > 0 for ms in result.timings_ms.values())


def test_models_dir_knows_the_source_was_synthetic(models):
    entry = ModelDir.open(models).entry("jppnet").to_json()
    assert ModelDir.open(models).synthetic("jppnet") and entry["variant"] == "reduced"
    assert entry["source"]["path"].endswith(CHECKPOINT_DIR)
