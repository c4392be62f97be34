"""runtime.agnostic: hand-computed small cases, then the seed's own code path end to end."""
import numpy as np
import pytest
from tryon.stages.agnostic import FAMILIES, agnostic_representation, family_constants

H, W = 256, 192


def blank(family: str):
    person = np.full((H, W, 3), 200, np.uint8)
    labels = np.zeros((H, W), np.uint8)
    keypoints = np.zeros((FAMILIES[family].keypoints, 2))  # all undetected
    return person, labels, keypoints


def on_pixels(channel: np.ndarray):
    ys, xs = np.nonzero(channel == 1.0)
    return xs.min(), xs.max(), ys.min(), ys.max(), len(xs)


def test_family_table():
    assert (FAMILIES["cpvton"].channels, FAMILIES["grayxu"].channels) == (22, 20)
    assert (FAMILIES["cpvton"].radius, FAMILIES["grayxu"].radius) == (5, 3)
    assert set(FAMILIES["grayxu"].head_labels) - set(FAMILIES["cpvton"].head_labels) == {9}
    with pytest.raises(ValueError, match="known: cpvton, grayxu"):
        family_constants("viton")


@pytest.mark.parametrize("family", ["cpvton", "grayxu"])
def test_channels_and_values(family):
    out = agnostic_representation(*blank(family), family)
    assert out.shape == (FAMILIES[family].channels, H, W) and out.dtype == np.float32
    assert np.all(out == -1.0)  # no body, no head, no keypoint: everything is "absent"


@pytest.mark.parametrize("family, r", [("cpvton", 5), ("grayxu", 3)])
def test_pose_square_position_size_and_border_clipping(family, r):
    person, labels, keypoints = blank(family)
    keypoints[0] = (50, 60)
    keypoints[1] = (50.7, 60.9)  # Pillow truncates the corners of the square
    keypoints[2] = (190, 254)  # clipped by the image border
    out = agnostic_representation(person, labels, keypoints, family)
    assert on_pixels(out[4]) == (50 - r, 50 + r, 60 - r, 60 + r, (2 * r + 1) ** 2)
    assert on_pixels(out[5]) == (int(50.7 - r), int(50.7 + r), int(60.9 - r), int(60.9 + r), (2 * r + 1) ** 2)
    assert on_pixels(out[6])[:4] == (190 - r, 191, 254 - r, 255)
    assert set(np.unique(out[4:])) == {-1.0, 1.0}
    assert np.all(out[7:] == -1.0)


@pytest.mark.parametrize("point", [(1, 50), (50, 1), (0, 0), (-5, 40), (1.0, 1.0)])
def test_keypoints_at_or_below_one_are_not_drawn(point):
    person, labels, keypoints = blank("cpvton")
    keypoints[3] = point
    assert np.all(agnostic_representation(person, labels, keypoints, "cpvton")[4 + 3] == -1.0)


def test_keypoint_just_above_one_is_drawn_and_clipped():
    person, labels, keypoints = blank("cpvton")
    keypoints[3] = (1.5, 1.5)
    assert on_pixels(agnostic_representation(person, labels, keypoints, "cpvton")[7]) == (0, 6, 0, 6, 49)


@pytest.mark.parametrize("family, label, kept", [
    ("cpvton", 13, True), ("grayxu", 13, True), ("cpvton", 2, True), ("cpvton", 9, False), ("grayxu", 9, True),
    ("cpvton", 16, False), ("grayxu", 16, True), ("grayxu", 17, True), ("grayxu", 5, False), ("cpvton", 5, False),
])
def test_head_keeps_only_the_family_head_labels(family, label, kept):
    person, labels, keypoints = blank(family)
    person[100:110, 20:30] = (255, 0, 51)  # 255 -> 1, 0 -> -1, 51 -> -0.6
    labels[100:110, 20:30] = label
    head = agnostic_representation(person, labels, keypoints, family)[1:4]
    expected = np.full((3, H, W), -1.0, np.float32)
    if kept:
        expected[:, 100:110, 20:30] = np.array([1.0, -1.0, 51 / 255 * 2 - 1], np.float32)[:, None, None]
    np.testing.assert_allclose(head, expected, atol=1e-6)


def test_shape_is_the_blurred_silhouette_in_unit_range():
    person, labels, keypoints = blank("grayxu")
    labels[:] = 5
    assert np.all(agnostic_representation(person, labels, keypoints, "grayxu")[0] == 1.0)
    labels[:, :] = 0
    labels[64:192, 48:144] = 16  # a block: soft edges after the 12x16 round trip
    shape = agnostic_representation(person, labels, keypoints, "grayxu")[0]
    assert shape[128, 96] == 1.0 and shape[5, 5] == -1.0
    assert np.any((shape > -1) & (shape < 1))


@pytest.mark.parametrize("bad, message", [
    (dict(person=np.zeros((256, 192, 3), np.float32)), "uint8 RGB"),
    (dict(person=np.zeros((255, 192, 3), np.uint8)), "256x192x3"),
    (dict(labels=np.zeros((256, 192), np.float32)), "integer label map"),
    (dict(keypoints=np.zeros((18, 2))), r"\(16, 2\)"),
    (dict(keypoints=np.full((16, 2), np.nan)), "finite"),
])
def test_bad_inputs_are_refused_clearly(bad, message):
    person, labels, keypoints = blank("grayxu")
    args = dict(person=person, labels=labels, keypoints=keypoints) | bad
    with pytest.raises(ValueError, match=message):
        agnostic_representation(args["person"], args["labels"], args["keypoints"], "grayxu")


def seed_agnostic(person, labels, keypoints, family):
    """The seed's code path, written the way cp_dataset.py / CPVTON.py / Model.py do it."""
    import torch
    from PIL import Image, ImageDraw

    def transform(image):  # ToTensor + Normalize((0.5,)*3, (0.5,)*3)
        t = torch.from_numpy(np.array(image))
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
        return (t.float().div(255) - 0.5) / 0.5

    parse = labels.astype(np.int64)
    if family == "grayxu":
        parse = parse + (parse == 16) * (-(16 - 9)) + (parse == 17) * (-(17 - 9))
    parse_shape = Image.fromarray(((parse > 0).astype(np.float32) * 255).astype(np.uint8))
    parse_shape = parse_shape.resize((192 // 16, 256 // 16), Image.BILINEAR).resize((192, 256), Image.BILINEAR)
    shape = transform(parse_shape)
    phead = sum((parse == label).astype(np.float32) for label in FAMILIES[family].head_labels)
    phead = torch.from_numpy(phead)
    im_h = transform(person) * phead - (1 - phead)
    r = FAMILIES[family].radius
    pose_map = torch.zeros(len(keypoints), 256, 192)
    for i, (x, y) in enumerate(keypoints):
        one_map = Image.new("L", (192, 256))
        if x > 1 and y > 1:
            ImageDraw.Draw(one_map).rectangle((x - r, y - r, x + r, y + r), "white", "white")
        pose_map[i] = transform(one_map)[0]
    return torch.cat([shape, im_h, pose_map], 0).numpy()


@pytest.mark.exact
@pytest.mark.parametrize("family", ["cpvton", "grayxu"])
def test_matches_the_seed_code_path_exactly(family):
    from tryon.export.cpvton_export import person_sample

    person, labels, keypoints = person_sample(shift=5)
    kp = keypoints[family].copy()
    kp[0] = (0, 0)  # one undetected joint
    kp[1] += (0.6, 0.3)  # fractional, as OpenPose gives them
    assert np.isin([16, 17, 9], labels).all()  # legs and pants are present, so relabelling matters
    ours = agnostic_representation(person, labels, kp, family)
    assert np.array_equal(ours, seed_agnostic(person, labels, kp, family))
