"""CpvtonStage end to end on exported synthetic models (both families)."""
import numpy as np
import pytest

from tryon.runtime.agnostic import agnostic_representation, to_unit_range
from tryon.runtime.cpvton_stage import CpvtonStage, fit_cloth
from tryon.runtime.keypoints import lip_to_openpose
from tryon.runtime.session import SessionOptions

CPU = SessionOptions(provider="cpu", threads=2)


@pytest.fixture(scope="session")
def stages(tmp_path_factory):
    from tryon.export.cpvton_export import export_cpvton
    from tryon.export.cpvton_synth import write_synthetic

    out = {}
    for family in ("grayxu", "cpvton"):
        paths = write_synthetic(tmp_path_factory.mktemp(f"stage_ckpt_{family}"), family, seed=1)
        models_dir = tmp_path_factory.mktemp(f"stage_models_{family}")
        export_cpvton(paths["gmm"], paths["tom"], models_dir)
        out[family] = CpvtonStage.from_dir(models_dir, CPU)
    return out


def sample(family, shift=0, hue=0):
    from tryon.export.cpvton_export import garment_sample, person_sample

    person, labels, keypoints = person_sample(shift)
    return person, garment_sample(hue), labels, keypoints["grayxu"]  # LIP joints: the stage maps them


@pytest.mark.parametrize("family, channels", [("grayxu", 20), ("cpvton", 22)])
def test_run_follows_the_seed_arithmetic(stages, family, channels):
    stage = stages[family]
    assert stage.family == family
    person, cloth, labels, keypoints = sample(family)
    result = stage.run(person, cloth, labels, keypoints)
    assert result.image.shape == result.warped_cloth.shape == result.rendered.shape == (256, 192, 3)
    assert result.image.dtype == result.warped_cloth.dtype == np.uint8
    assert result.mask.shape == (256, 192) and 0 < result.mask.min() and result.mask.max() < 1
    assert set(result.timings_ms) == {"agnostic", "gmm", "tom", "composite"}

    # The same steps by hand, straight on the sessions.
    family_keypoints = lip_to_openpose(keypoints) if family == "cpvton" else keypoints
    agnostic = agnostic_representation(person, labels, family_keypoints, family)[None]
    assert result.agnostic.shape == (channels, 256, 192) and np.array_equal(result.agnostic, agnostic[0])
    cloth_in = to_unit_range(cloth).transpose(2, 0, 1)[None]
    (warped,) = stage.gmm.run(["warped_cloth"], {"agnostic": agnostic, "cloth": cloth_in})
    warped_u8 = np.clip((warped + 1) * 0.5 * 255, 0, 255).astype(np.uint8)[0].transpose(1, 2, 0)
    assert np.array_equal(result.warped_cloth, warped_u8)
    (tryon,) = stage.tom.run(["tryon"], {"agnostic": agnostic,
                                         "warped_cloth": to_unit_range(warped_u8).transpose(2, 0, 1)[None]})
    image = np.array((tryon[0].transpose(1, 2, 0) + 1) / 2 * 255, dtype=np.uint8)  # the seed's cast
    assert np.array_equal(result.image, image)


def test_batch_of_two_equals_two_singles(stages):
    stage = stages["grayxu"]
    a, b = sample("grayxu", shift=0, hue=0), sample("grayxu", shift=8, hue=2)
    singles = [stage.run(*a), stage.run(*b)]
    batch = stage.run_batch(*[list(pair) for pair in zip(a, b)])
    assert len(batch) == 2
    for one, many in zip(singles, batch):
        assert np.array_equal(one.agnostic, many.agnostic)
        # Batched convolutions may round differently in the last float bit, which can flip
        # a uint8 step of the warped cloth; anything beyond that would be a batching bug.
        warped_diff = np.abs(one.warped_cloth.astype(int) - many.warped_cloth)
        assert warped_diff.max() <= 1 and (warped_diff > 0).mean() < 1e-3
        assert np.abs(one.image.astype(int) - many.image).max() <= 2
        assert np.abs(one.mask - many.mask).max() < 5e-3
    assert not np.array_equal(batch[0].image, batch[1].image)


def test_cpvton_stage_takes_lip_keypoints_for_both_families(stages):
    person, cloth, labels, _ = sample("grayxu")
    with pytest.raises(ValueError, match=r"16 LIP keypoints"):
        stages["cpvton"].run(person, cloth, labels, np.zeros((18, 2)))
    with pytest.raises(ValueError, match=r"grayxu needs \(16, 2\)"):
        stages["grayxu"].run(person, cloth, labels, np.zeros((18, 2)))


def test_run_batch_refuses_ragged_lists(stages):
    person, cloth, labels, keypoints = sample("grayxu")
    with pytest.raises(ValueError, match="equal length"):
        stages["grayxu"].run_batch([person, person], [cloth], [labels], [keypoints])


def test_fit_cloth_passes_exact_size_untouched():
    cloth = np.random.default_rng(0).integers(0, 256, (256, 192, 3), dtype=np.uint8)
    assert fit_cloth(cloth) is cloth


@pytest.mark.parametrize("shape, content", [((100, 300, 3), (256, 192)), ((600, 200, 3), (256, 192))])
def test_fit_cloth_keeps_aspect_and_pads_white(shape, content):
    cloth = np.zeros(shape, np.uint8)  # black garment: everything non-white is garment
    out = fit_cloth(cloth)
    assert out.shape == (256, 192, 3) and out.dtype == np.uint8
    ys, xs = np.nonzero(out.min(axis=2) < 255)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert abs(w / h - shape[1] / shape[0]) < 0.05
    assert (h == 256) or (w == 192)
    assert abs((ys.min() + ys.max()) / 2 - 127.5) <= 1 and abs((xs.min() + xs.max()) / 2 - 95.5) <= 1
    assert np.all(out[0 if h < 256 else 128, 0 if w < 192 else 96] == 255)


def test_fit_cloth_refuses_non_images():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        fit_cloth(np.zeros((256, 192), np.uint8))
