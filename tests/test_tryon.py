"""TryOn.predict on tiny synthetic models: every flag changes the output as the seed specified."""
import numpy as np
import pytest
from test_seed_rules import standing_pose
from tryon.images import ImageError, load_rgb
from tryon.options import ParseOptions
from tryon.stages.brightness import enhance
from tryon.stages.cpvton import fit_cloth
from tryon.stages.keypoints import LIP
from tryon.stages.person_crop import crop_person, pose_box


def person_and_parse(height=600, width=400):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    labels = np.zeros((height, width), np.uint8)
    labels[90:130, 180:220] = 13   # face
    labels[140:300, 150:250] = 5   # upper clothes
    labels[300:500, 170:230] = 9   # pants
    return photo, labels, standing_pose()


def test_predict_runs_jppnet_on_a_real_photo(tiny_tryon, viton_pair):
    person, cloth = viton_pair
    result = tiny_tryon.predict(person, cloth, need_pre=False, intermediates=True)
    assert result.image.shape == (256, 192, 3) and result.image.dtype == np.uint8
    assert result.intermediates["labels"].shape == (256, 192)
    assert result.intermediates["labels"].max() < 20
    assert np.isfinite(result.confidence)
    for stage in ("decode", "crop", "cpvton.gmm", "cpvton.tom", "total"):
        assert stage in result.timings_ms, result.timings_ms
    assert any(k.startswith("parse.") for k in result.timings_ms)


def test_need_pre_crops_the_pose_box_and_remaps_keypoints(tiny_tryon):
    photo, labels, k = person_and_parse()
    cloth = np.full((256, 192, 3), 128, np.uint8)
    result = tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k, intermediates=True)
    person, parse, moved = crop_person(photo, labels, k, pose_box(k, 600, 400))
    assert np.array_equal(result.intermediates["person"], person)
    assert np.array_equal(result.intermediates["labels"], parse)
    assert np.array_equal(result.intermediates["keypoints"], moved)
    assert result.confidence == 1.0 and result.ok


def test_keep_back_keeps_the_photo_outside_upper_clothes(tiny_tryon):
    photo, labels, k = person_and_parse()
    cloth = np.full((256, 192, 3), 128, np.uint8)
    plain = tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k, intermediates=True)
    kept = tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k, keep_back=True, intermediates=True)
    garment = kept.intermediates["labels"] == 5
    framed = kept.intermediates["person"]
    assert garment.any() and (~garment).any()
    assert np.array_equal(kept.image[~garment], framed[~garment])
    assert np.array_equal(kept.image[garment], plain.image[garment])
    soft = tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k, keep_back=True, need_dilate=True)
    assert not np.array_equal(soft.image, kept.image)


def test_need_bright_brightens_before_everything(tiny_tryon):
    photo = np.full((256, 192, 3), 100, np.uint8)
    labels = np.zeros((256, 192), np.uint8)
    k = np.full((16, 2), 50)
    cloth = np.full((256, 192, 3), 128, np.uint8)
    result = tiny_tryon.predict(photo, cloth, need_pre=False, need_bright=True,
                                labels=labels, keypoints=k, intermediates=True)
    assert np.array_equal(result.intermediates["person"], enhance(photo))
    assert result.intermediates["person"][0, 0, 0] == 130


def test_check_dirty_refuses_crossed_arms(tiny_tryon):
    photo, labels, k = person_and_parse()
    k[LIP["r_wrist"]] = (215, 230)
    cloth = np.full((256, 192, 3), 128, np.uint8)
    assert tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k).confidence == 1.0
    refused = tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k, check_dirty=True)
    assert refused.confidence == 0.0 and "crossed arms" in refused.reason and not refused.ok
    assert refused.image.shape == (256, 192, 3)


def test_a_pose_that_frames_nothing_gives_confidence_zero(tiny_tryon):
    photo, labels, k = person_and_parse()
    k[LIP["head_top"]] = (200, 590)
    result = tiny_tryon.predict(photo, np.full((256, 192, 3), 128, np.uint8), labels=labels, keypoints=k)
    assert result.confidence == 0.0 and "no upright person" in result.reason


def test_batch_equals_single_predictions(tiny_tryon, viton_pair):
    person, cloth = viton_pair
    photo, labels, k = person_and_parse()
    singles = [tiny_tryon.predict(person, cloth, need_pre=False),
               tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k)]
    batch = tiny_tryon.predict_batch([(person, cloth), (photo, cloth)], ParseOptions(), parses=[(None, None), (labels, k)])
    assert len(batch) == 2
    # Batched convolutions round slightly differently in ONNX Runtime: a uint8 step at most.
    diff = np.abs(batch[1].image.astype(int) - singles[1].image.astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.01
    first = tiny_tryon.predict_batch([(person, cloth)], ParseOptions(need_pre=False))[0]
    assert np.array_equal(first.image, singles[0].image)


def test_bad_inputs_give_clear_errors(tiny_tryon, viton_pair):
    person, cloth = viton_pair
    with pytest.raises(ImageError, match="person photo: not a JPEG, PNG, BMP or WebP"):
        tiny_tryon.predict(b"not an image", cloth)
    with pytest.raises(ImageError, match="garment photo"):
        tiny_tryon.predict(person, np.zeros((3, 3, 3), np.uint8))
    photo, labels, k = person_and_parse()
    with pytest.raises(ValueError, match="both labels and keypoints"):
        tiny_tryon.predict(photo, cloth, labels=labels)
    with pytest.raises(ValueError, match="labels have shape"):
        tiny_tryon.predict(photo, cloth, labels=labels[:10], keypoints=k)
    with pytest.raises(ValueError, match=r"\(16, 2\)"):
        tiny_tryon.predict(photo, cloth, labels=labels, keypoints=k[:5])


def test_garment_of_any_size_is_fitted():
    wide = np.zeros((100, 300, 3), np.uint8)
    fitted = fit_cloth(wide)
    assert fitted.shape == (256, 192, 3)
    assert (fitted[0] == 255).all() and (fitted[128] == 0).all()  # letterboxed with white
    exact = load_rgb(np.arange(256 * 192 * 3, dtype=np.uint8).reshape(256, 192, 3) % 251)
    assert np.array_equal(fit_cloth(exact), exact)
