"""Parse once, dress many: TryOn.parse + TryOn.dress against the one-call predict, ids, the store."""
import functools
import itertools

import numpy as np
import pytest
from test_tryon import person_and_parse
from tryon.images import ImageError, load_rgb
from tryon.options import DressOptions, ParseOptions, split_flags
from tryon.parsed_person import ParsedPerson, StoredPersonError
from tryon.pipeline import DRESS_BATCH, TryOn
from tryon.stages.brightness import enhance
from tryon.stages.keep_background import keep_background
from tryon.stages.keypoints import LIP, crossed_arms
from tryon.stages.person_crop import CannotFrame, crop_person, pose_box, resize_person
from tryon.store import MemoryStore

FLAG_NAMES = ("need_pre", "need_bright", "keep_back", "need_dilate", "check_dirty")
EVERY_FLAG_COMBINATION = [dict(zip(FLAG_NAMES, values)) for values in itertools.product((False, True), repeat=5)]


class CountingSession:
    """A JPP-Net session that counts its runs."""

    def __init__(self, session):
        self.session, self.runs = session, 0

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


@pytest.fixture(scope="module")
def fast_tryon(tiny_models_dir):
    """One scale, no mirror: the split is the subject, not JPP-Net's test-time augmentation."""
    return TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False)


def garments(count):
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (200 + 10 * i, 150, 3), dtype=np.uint8) for i in range(count)]


@pytest.fixture(scope="module")
def stored_tryon(fast_tryon):
    """fast_tryon's sessions behind a person store."""
    return TryOn(fast_tryon.parse_stage, fast_tryon.cpvton, fast_tryon.models, fast_tryon.jppnet_graph,
                 MemoryStore())


@functools.lru_cache(maxsize=4)
def jppnet_parse(tryon, photo, need_bright):
    rgb = load_rgb(photo)
    return tryon.parse_stage.run(enhance(rgb) if need_bright else rgb)


def seed_order(tryon, photo, cloth, flags, labels=None, keypoints=None):
    """The one-call pipeline written out step by step from the stages, in the seed's order:
    what predict gave before the split. Returns (image, confidence)."""
    rgb = load_rgb(photo)
    if flags["need_bright"]:
        rgb = enhance(rgb)
    if labels is None:
        parsed = jppnet_parse(tryon, photo, flags["need_bright"])
        labels, keypoints, confidence = parsed.labels, parsed.keypoints, parsed.confidence
    else:
        confidence = 1.0
    try:
        framed = (crop_person(rgb, labels, keypoints, pose_box(keypoints, *labels.shape)) if flags["need_pre"]
                  else resize_person(rgb, labels, keypoints))
    except CannotFrame:
        return resize_person(rgb, labels, keypoints)[0], 0.0
    person, labels, keypoints = framed
    if flags["check_dirty"] and crossed_arms(keypoints):
        return person, 0.0
    image = tryon.cpvton.run(person, load_rgb(cloth), labels, keypoints).image
    if flags["keep_back"]:
        image = keep_background(person, image, labels, flags["need_dilate"])
    return image, confidence


@pytest.mark.exact
@pytest.mark.parametrize("flags", EVERY_FLAG_COMBINATION, ids=lambda f: "".join("01"[v] for v in f.values()))
def test_predict_and_parse_plus_dress_give_the_bytes_of_the_one_call_pipeline(stored_tryon, viton_pair, flags):
    """Both ways, on a JPP-Net parse and on a given one; parse + dress from the store (the
    first predict of each parse option parsed and stored the person)."""
    person, cloth = viton_pair
    photo, labels, keypoints = person_and_parse()
    keypoints[LIP["r_wrist"]] = (215, 230)  # crossed arms, so that check_dirty refuses this one
    parse_options, dress_options = split_flags(**flags)
    for given in ({}, {"labels": labels, "keypoints": keypoints}):
        source = photo if given else person
        image, confidence = seed_order(stored_tryon, source, cloth, flags, **given)
        predicted = stored_tryon.predict(source, cloth, **flags, **given)
        call = stored_tryon.parse_call(source, parse_options, **given)
        parsed = call.parsed
        assert "store" in call.timings_ms and not any(k.startswith("parse.") for k in call.timings_ms)
        dressed = stored_tryon.dress(parsed, [cloth], dress_options)[0]
        for result in (predicted, dressed):
            assert np.array_equal(result.image, image)
            assert result.confidence == pytest.approx(confidence)
        assert bool(predicted.reason) == (confidence == 0.0)


@pytest.mark.exact
def test_many_garments_batch_like_singles_within_one_uint8_step(fast_tryon, viton_pair):
    parsed = fast_tryon.parse(viton_pair[0], need_pre=False)
    cloths = garments(DRESS_BATCH + 3)  # one full batch and a smaller one
    together = fast_tryon.dress(parsed, cloths)
    alone = [fast_tryon.dress(parsed, [cloth])[0] for cloth in cloths]
    assert len(together) == len(cloths)
    for many, one in zip(together, alone):
        diff = np.abs(many.image.astype(int) - one.image)
        # ONNX Runtime's batched convolutions round differently in the last float bit: measured
        # on these models, one uint8 step on 3-5% of the pixels for noise garments (1-2% for
        # the VITON garments), never more than one step.
        assert diff.max() <= 1 and (diff > 0).mean() < 0.1
    assert not np.array_equal(together[0].image, together[1].image)
    # The same batch size gives the same bytes.
    again = fast_tryon.dress(parsed, cloths)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(together, again))


def test_dress_returns_the_photo_for_a_refused_person_and_runs_no_networks(fast_tryon):
    photo, labels, keypoints = person_and_parse()
    keypoints[LIP["head_top"]] = (200, 590)  # nothing to frame
    parsed = fast_tryon.parse(photo, labels=labels, keypoints=keypoints)
    assert parsed.refused and parsed.confidence == 0.0 and "no upright person" in parsed.reason
    results = fast_tryon.dress(parsed, garments(2), intermediates=True)
    assert [r.reason for r in results] == [parsed.reason] * 2
    assert all(np.array_equal(r.image, parsed.person) for r in results)
    assert not any(name.startswith("cpvton.") for name in results[0].timings_ms)


def test_ids_follow_the_pixels_and_everything_that_changes_a_parse(fast_tryon, tiny_tryon, viton_pair):
    person, _ = viton_pair
    by_path = fast_tryon.parse(person, need_pre=False)
    assert fast_tryon.parse(person.read_bytes(), need_pre=False).id == by_path.id
    assert fast_tryon.parse(load_rgb(person), need_pre=False).id == by_path.id
    other_ids = {
        fast_tryon.parse(person).id,  # another parse option
        tiny_tryon.parse(person, need_pre=False).id,  # other scales and mirror
        fast_tryon.parse(np.flipud(load_rgb(person)).copy(), need_pre=False).id,  # other pixels
    }
    assert by_path.id not in other_ids and len(other_ids) == 3


def test_a_store_hit_runs_no_jppnet(tiny_models_dir, viton_pair):
    tryon = TryOn.from_dir(tiny_models_dir, provider="cpu", scales=(1.0,), mirror=False, store=MemoryStore())
    tryon.parse_stage.session = counting = CountingSession(tryon.parse_stage.session)
    person, cloth = viton_pair
    first_call = tryon.parse_call(person)
    first = first_call.parsed
    assert counting.runs == 1
    again_call = tryon.parse_call(person.read_bytes())
    again = again_call.parsed
    assert counting.runs == 1 and again.id == first.id and "store" in again_call.timings_ms and again_call.from_store
    assert not first_call.from_store
    assert not any(name.startswith("parse.") for name in again_call.timings_ms)
    assert np.array_equal(again.labels, first.labels) and np.array_equal(again.keypoints, first.keypoints)
    # The call's facts travel beside the person, never in it: the stored person is shared.
    assert not hasattr(again, "timings_ms") and not hasattr(again, "from_store")
    assert tryon.parse_call(person).timings_ms is not again_call.timings_ms  # each call its own
    assert tryon.predict(person, cloth).confidence == pytest.approx(first.confidence)
    assert counting.runs == 1
    tryon.parse(person, need_bright=True)  # another parse option: a parse of its own
    assert counting.runs == 2


def test_predict_batch_parses_each_photo_once_even_without_a_store(fast_tryon, viton_pair):
    person, cloth = viton_pair
    counting = CountingSession(fast_tryon.parse_stage.session)
    fast_tryon.parse_stage.session = counting
    try:
        results = fast_tryon.predict_batch([(person, cloth), (person, garments(1)[0]), (person, cloth)],
                                           ParseOptions(need_pre=False))
    finally:
        fast_tryon.parse_stage.session = counting.session
    assert counting.runs == 1 and len(results) == 3
    assert np.array_equal(results[0].image, results[2].image)


def test_a_bad_garment_fails_before_any_jppnet_work(fast_tryon, viton_pair):
    counting = CountingSession(fast_tryon.parse_stage.session)
    fast_tryon.parse_stage.session = counting
    try:
        with pytest.raises(ImageError, match="garment photo"):
            fast_tryon.predict(viton_pair[0], b"not an image")
    finally:
        fast_tryon.parse_stage.session = counting.session
    assert counting.runs == 0


def test_dress_refuses_a_bad_garment_alone_and_dresses_the_others(fast_tryon, viton_pair, tmp_path):
    """One outcome per garment, in order: an undecodable garment or a missing file is its own
    TryonError, and the garments around it get the images they get without it."""
    from tryon.errors import TryonError

    person, cloth = viton_pair
    parsed = fast_tryon.parse(person, need_pre=False)
    good = garments(2)
    outcomes = fast_tryon.dress(parsed, [good[0], b"not an image", good[1], tmp_path / "missing.png"])
    assert [isinstance(outcome, TryonError) for outcome in outcomes] == [False, True, False, True]
    assert str(outcomes[1]).startswith("garment photo: ") and "no such file" in str(outcomes[3])
    for outcome, alone in zip(outcomes[::2], fast_tryon.dress(parsed, good)):
        assert np.array_equal(outcome.image, alone.image) and outcome.timings_ms["decode"] >= 0
    [named] = fast_tryon.dress(parsed, [b"not an image"], names=["garment x.png"])
    assert isinstance(named, ImageError) and str(named).startswith("garment x.png: ")
    refused = fast_tryon.parse(person, need_pre=False, check_dirty=True)  # a refused person's bad garment too
    assert isinstance(fast_tryon.dress(refused, [b"not an image"])[0], ImageError)


def test_options_travel_as_objects_or_as_their_fields(fast_tryon, viton_pair):
    person, cloth = viton_pair
    as_object = fast_tryon.parse(person, ParseOptions(need_pre=False, need_bright=True))
    as_fields = fast_tryon.parse(person, need_pre=False, need_bright=True)
    assert as_object.id == as_fields.id and as_object.options == as_fields.options
    kept = fast_tryon.dress(as_object, cloth, DressOptions(keep_back=True))[0]
    assert np.array_equal(kept.image, fast_tryon.dress(as_object, [cloth], keep_back=True)[0].image)
    with pytest.raises(TypeError, match="keep_back"):
        fast_tryon.parse(person, keep_back=True)  # a dress option given to the parse


def test_a_parsed_person_survives_its_stored_form(fast_tryon, viton_pair):
    parsed = fast_tryon.parse(viton_pair[0], need_pre=False, check_dirty=True)
    back = ParsedPerson.from_bytes(parsed.to_bytes())
    assert (back.id, back.confidence, back.reason, back.options) == (parsed.id, parsed.confidence, parsed.reason,
                                                                     parsed.options)
    for name in ("person", "labels", "keypoints"):
        original, restored = getattr(parsed, name), getattr(back, name)
        assert np.array_equal(original, restored) and original.dtype == restored.dtype
    assert len(parsed.to_bytes()) < parsed.person.nbytes + parsed.labels.nbytes  # labels compress
    with pytest.raises(StoredPersonError, match="not a stored parsed person"):
        ParsedPerson.from_bytes(b"PK\x03\x04 garbage")


@pytest.mark.parametrize("keypoints, message", [
    (np.full((16, 2), np.nan), "finite"),
    (np.full((16, 2), np.inf), "finite"),
    (np.array([["a", "b"]] * 16), "finite"),
])
def test_given_keypoints_are_checked_before_anything_uses_them(fast_tryon, keypoints, message):
    photo, labels, _ = person_and_parse()
    with pytest.raises(ValueError, match=message):
        fast_tryon.predict(photo, garments(1)[0], labels=labels, keypoints=keypoints)


def test_given_fractional_keypoints_keep_the_seeds_comparison(fast_tryon):
    # The seed draws a joint when x > 1 and y > 1 on the values it is given: 1.5 counts, 1.0 does not.
    photo = np.full((256, 192, 3), 128, np.uint8)
    labels = np.zeros((256, 192), np.uint8)
    cloth = garments(1)[0]
    drawn = {}
    for x in (1.0, 1.5):
        keypoints = np.full((16, 2), 100.0)
        keypoints[0] = (x, 100.0)
        result = fast_tryon.predict(photo, cloth, need_pre=False, labels=labels, keypoints=keypoints,
                                    intermediates=True)
        assert result.intermediates["keypoints"][0, 0] == x
        drawn[x] = result.image
    assert not np.array_equal(drawn[1.0], drawn[1.5])


def test_jpeg_dct_fast_parses_the_pixels_tensorflow_decodes(fast_tryon, viton_pair):
    tf = pytest.importorskip("tensorflow")
    person, _ = viton_pair
    tf_pixels = tf.io.decode_jpeg(person.read_bytes(), channels=3).numpy()
    fast = fast_tryon.parse(person, need_pre=False, jpeg_dct="fast")
    from_tf = fast_tryon.parse(tf_pixels, need_pre=False)
    assert np.array_equal(fast.person, from_tf.person) and np.array_equal(fast.labels, from_tf.labels)
    assert fast.id != fast_tryon.parse(person, need_pre=False).id  # other pixels, another parse
    with pytest.raises(ValueError, match="jpeg_dct 'slow' is not one of accurate, fast"):
        ParseOptions(jpeg_dct="slow")


def test_warp_jpeg_hands_tom_the_jpeg_of_the_warp(fast_tryon, viton_pair):
    from tryon.stages.cpvton import jpeg_round_trip

    person, cloth = viton_pair
    parsed = fast_tryon.parse(person, need_pre=False)
    plain = fast_tryon.dress(parsed, cloth, intermediates=True)[0]
    jpeg = fast_tryon.dress(parsed, cloth, warp_jpeg=True, intermediates=True)[0]
    assert np.array_equal(jpeg.intermediates["warped_cloth"], jpeg_round_trip(plain.intermediates["warped_cloth"][None])[0])
    assert not np.array_equal(jpeg.image, plain.image)


def test_a_dress_only_pipeline_dresses_what_another_parsed(tiny_models_dir, fast_tryon, viton_pair):
    person, cloth = viton_pair
    dresser = TryOn.from_dir(tiny_models_dir, provider="cpu", load_jppnet=False)
    assert dresser.parse_stage is None
    parsed = fast_tryon.parse(person, need_pre=False)
    shipped = ParsedPerson.from_bytes(parsed.to_bytes())  # as it travels between replicas
    assert np.array_equal(dresser.dress(shipped, cloth)[0].image, fast_tryon.dress(parsed, cloth)[0].image)
    with pytest.raises(ValueError, match="dress only"):
        dresser.parse(person)
