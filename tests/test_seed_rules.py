"""The seed's per-flag rules: brightness, crop, crossed arms, keypoint mapping, keep_back."""
import numpy as np
import pytest
from PIL import Image, ImageEnhance
from tryon.stages.brightness import enhance
from tryon.stages.keep_background import garment_mask, keep_background
from tryon.stages.keypoints import LIP, crossed_arms, lip_to_openpose
from tryon.stages.person_crop import CannotFrame, crop_person, pose_box


@pytest.mark.exact
def test_brightness_equals_pillow_for_every_value():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = np.stack([values, values[::-1], values.T], axis=-1)
    expected = np.array(ImageEnhance.Brightness(Image.fromarray(rgb)).enhance(1.3))
    assert np.array_equal(enhance(rgb), expected)


def test_brightness_allocates_only_its_result():
    """The float32 product of a whole photo was four times the photo (480 MB at 40 MP)."""
    import tracemalloc

    rgb = np.random.default_rng(0).integers(0, 256, (1500, 1000, 3), dtype=np.uint8)
    tracemalloc.start()
    try:
        enhance(rgb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * rgb.nbytes


def standing_pose(dx=0, dy=0):
    """A person standing in a 600x400 photo: head top at y=100, hips at y=300."""
    k = np.zeros((16, 2), np.int64)
    k[LIP["head_top"]] = (200, 100)
    k[LIP["neck"]] = (200, 140)
    k[LIP["r_shoulder"]], k[LIP["l_shoulder"]] = (160, 160), (240, 160)
    k[LIP["r_elbow"]], k[LIP["l_elbow"]] = (150, 220), (250, 220)
    k[LIP["r_wrist"]], k[LIP["l_wrist"]] = (145, 280), (255, 280)
    k[LIP["r_hip"]], k[LIP["l_hip"]] = (180, 300), (220, 300)
    k[LIP["r_knee"]], k[LIP["l_knee"]] = (180, 400), (220, 400)
    k[LIP["r_ankle"]], k[LIP["l_ankle"]] = (180, 500), (220, 500)
    k[LIP["pelvis"]], k[LIP["thorax"]] = (200, 300), (200, 170)
    return k + (dx, dy)


def test_crop_box_and_keypoint_remap():
    k = standing_pose()
    box = pose_box(k, 600, 400)
    # 200 px from head top to hips, +40 above and below; width 3/4 of 280, centred on x=200.
    assert (box.top, box.bottom) == (60, 340)
    assert (box.left, box.right) == (95, 305)
    photo = np.zeros((600, 400, 3), np.uint8)
    labels = np.zeros((600, 400), np.uint8)
    labels[100:300, 180:220] = 5
    labels[400:, :] = 19
    person, parse, moved = crop_person(photo, labels, k, box)
    assert person.shape == (256, 192, 3) and parse.shape == (256, 192)
    # (x - left) * 192 / 210 and (y - top) * 256 / 280: the seed added the offset instead.
    assert moved[LIP["head_top"]].tolist() == [int((200 - 95) * 192 / 210), int((100 - 60) * 256 / 280)]
    assert set(np.unique(parse)) == {0, 5}  # nearest neighbour: no blended or overflowed labels


def test_crop_slides_inside_the_photo_and_refuses_non_persons():
    box = pose_box(standing_pose(dx=-150), 600, 400)
    assert box.left == 0 and box.right - box.left == 210
    upside_down = standing_pose()
    upside_down[LIP["head_top"]] = (200, 550)
    with pytest.raises(CannotFrame, match="no upright person"):
        pose_box(upside_down, 600, 400)
    tiny = np.zeros((16, 2), np.int64)
    tiny[LIP["head_top"]] = (5, 5)
    tiny[LIP["r_hip"]] = (5, 9)
    with pytest.raises(CannotFrame, match="no person"):
        pose_box(tiny, 600, 400)


def test_crossed_arms():
    k = standing_pose()
    assert not crossed_arms(k)
    k[LIP["r_wrist"]] = (215, 230)  # right wrist in front of the torso
    assert crossed_arms(k)
    k[LIP["r_wrist"]] = (185, 295)  # resting on its own hip: allowed
    assert not crossed_arms(k)


def test_lip_to_openpose_order():
    lip = np.arange(32).reshape(16, 2) + 10
    op = lip_to_openpose(lip)
    assert op.shape == (18, 2)
    assert op[1].tolist() == lip[LIP["neck"]].tolist()
    assert op[4].tolist() == lip[LIP["r_wrist"]].tolist()
    assert op[13].tolist() == lip[LIP["l_ankle"]].tolist()
    assert (op[[0, 14, 15, 16, 17]] == 0).all()  # nose, eyes, ears: LIP has none
    with pytest.raises(ValueError, match="16 LIP keypoints"):
        lip_to_openpose(np.zeros((18, 2)))


def test_keep_back_keeps_pixels_outside_upper_clothes():
    photo = np.full((256, 192, 3), 10, np.uint8)
    tryon = np.full((256, 192, 3), 200, np.uint8)
    labels = np.zeros((256, 192), np.uint8)
    labels[80:160, 60:130] = 5
    out = keep_background(photo, tryon, labels, dilate=False)
    assert (out[labels == 5] == 200).all() and (out[labels != 5] == 10).all()
    soft = garment_mask(labels, dilate=True)
    assert soft.dtype == np.float32 and 0 <= soft.min() and soft.max() <= 1.0001
    assert soft[120, 95] > 0.9 and soft[0, 0] < 0.01
    assert 0.05 < soft[120, 135] < 0.95  # the seam is soft just outside the garment


def test_dilated_mask_equals_the_seeds_pillow_path():
    import cv2
    labels = np.zeros((256, 192), np.uint8)
    labels[70:170, 50:140] = 5
    cloth = (labels == 5).astype(np.float32)
    dilated = cv2.blur(cv2.dilate(cloth, cv2.getStructuringElement(cv2.MORPH_RECT, (18, 18))), (14, 14))
    img = Image.fromarray(dilated * 255).resize((19, 25), Image.BILINEAR).resize((192, 256), Image.BILINEAR)
    expected = np.array(img) / 255
    assert np.abs(garment_mask(labels, dilate=True) - expected).max() < 1e-5
