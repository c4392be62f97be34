"""CpvtonStage end to end on exported synthetic models (both families): the graphs it picks, the
person's work done once per person, and against the whole networks an older export ran."""
import json
import shutil

import numpy as np
import pytest
from shared_data import viton_dir
from tryon.models.session import SessionOptions
from tryon.stages import cpvton as cpvton_stage
from tryon.stages.agnostic import agnostic_representation, to_unit_range
from tryon.stages.cpvton import CpvtonStage, distinct_persons, fit_cloth
from tryon.stages.keypoints import lip_to_openpose

CPU = SessionOptions(provider="cpu", threads=2)


@pytest.fixture(scope="session")
def models_dirs(tmp_path_factory):
    from tryon.export.cpvton_export import export_cpvton
    from tryon.export.cpvton_synth import write_synthetic

    out = {}
    for family in ("grayxu", "cpvton"):
        paths = write_synthetic(tmp_path_factory.mktemp(f"stage_ckpt_{family}"), family, seed=1)
        out[family] = tmp_path_factory.mktemp(f"stage_models_{family}")
        export_cpvton(paths["gmm"], paths["tom"], out[family])
    return out


@pytest.fixture(scope="session")
def stages(models_dirs):
    return {family: CpvtonStage.from_dir(folder, CPU) for family, folder in models_dirs.items()}


@pytest.fixture(scope="session")
def older_dir(models_dirs, tmp_path_factory):
    """The grayxu export as an older one was: gmm.onnx and tom.onnx only."""
    folder = tmp_path_factory.mktemp("whole_networks")
    manifest = json.loads((models_dirs["grayxu"] / "manifest.json").read_text())
    manifest["models"] = {name: manifest["models"][name] for name in ("gmm", "tom")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for name in ("gmm.onnx", "tom.onnx"):
        shutil.copy(models_dirs["grayxu"] / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def whole_stage(older_dir):
    return CpvtonStage.from_dir(older_dir, CPU)


class CountingSession:
    """A session that records the batch size of each run."""

    def __init__(self, session):
        self.session, self.batches = session, []

    def run(self, names, feeds):
        self.batches.append(len(next(iter(feeds.values()))))
        return self.session.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


def sample(family, shift=0, hue=0):
    from tryon.export.cpvton_export import garment_sample, person_sample

    person, labels, keypoints = person_sample(shift)
    return person, garment_sample(hue), labels, keypoints["grayxu"]  # LIP joints: the stage maps them


@pytest.mark.exact
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

    # The same steps by hand, straight on the sessions: GMM's person half, its garment half, TOM.
    family_keypoints = lip_to_openpose(keypoints) if family == "cpvton" else keypoints
    agnostic = agnostic_representation(person, labels, family_keypoints, family)[None]
    assert result.agnostic.shape == (channels, 256, 192) and np.array_equal(result.agnostic, agnostic[0])
    cloth_in = to_unit_range(cloth).transpose(2, 0, 1)[None]
    (features,) = stage.gmm_person.run(["person_features"], {"agnostic": agnostic})
    (warped,) = stage.gmm.run(["warped_cloth"], {"person_features": features, "cloth": cloth_in})
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


@pytest.mark.parametrize("folder, provider, expected", [
    ("export", "cpu", [("gmm_garment.onnx", True), ("gmm_person.onnx", True), ("tom.winograd.onnx", False)]),
    ("export", "cuda", [("gmm_garment.onnx", True), ("gmm_person.onnx", True), ("tom.onnx", True)]),
    ("older", "cpu", [("gmm.onnx", True), ("tom.onnx", True)]),
])
def test_from_dir_opens_gmm_halves_and_on_the_cpu_the_winograd_tom(models_dirs, older_dir, monkeypatch, folder,
                                                                    provider, expected):
    """(file, whether ONNX Runtime may fold constants) of each session: the Winograd graph makes its
    transformed weights at each run and must not have them folded (held at 4x the weights)."""
    from tryon.models import graphs
    from tryon.models.session import PROVIDERS

    opened, real = [], graphs.create_session
    recorded = lambda path, options: opened.append((path.name, options.fold_constants)) or real(  # noqa: E731
        path, SessionOptions(provider="cpu"))
    monkeypatch.setattr(graphs, "resolve_providers", lambda _: PROVIDERS[provider])
    for module in (cpvton_stage, graphs):  # GMM's sessions, and TOM's (open_preferring_winograd)
        monkeypatch.setattr(module, "create_session", recorded)
    path = models_dirs["grayxu"] if folder == "export" else older_dir
    stage = CpvtonStage.from_dir(path, SessionOptions(provider=provider))
    assert sorted(opened) == expected
    assert (stage.gmm_person is None) == (folder == "older")
    assert sorted(f"{name}.onnx".replace("_winograd", ".winograd") for name in stage.graphs) == [f for f, _ in expected]


def test_one_persons_work_is_done_once_per_batch(stages, monkeypatch):
    """Three garments on one person: one agnostic, GMM's person half once at batch 1, the garment
    half and TOM at batch 3; two persons: the person half at batch 2."""
    stage = stages["grayxu"]
    built = []
    original = cpvton_stage.agnostic_representation
    monkeypatch.setattr(cpvton_stage, "agnostic_representation", lambda *a: built.append(1) or original(*a))
    person_half, garment_half, tom = (CountingSession(s) for s in (stage.gmm_person, stage.gmm, stage.tom))
    monkeypatch.setattr(stage, "gmm_person", person_half)
    monkeypatch.setattr(stage, "gmm", garment_half)
    monkeypatch.setattr(stage, "tom", tom)
    a, b = sample("grayxu", shift=0), sample("grayxu", shift=8)
    cloths = [sample("grayxu", hue=h)[1] for h in range(3)]
    copies = [np.copy(x) for x in (a[0], a[2], a[3])]  # equal arrays count as the same person
    out = stage.run_batch([a[0], copies[0], a[0]], cloths, [a[2], copies[1], a[2]], [a[3], copies[2], a[3]])
    assert (len(built), person_half.batches, garment_half.batches, tom.batches) == (1, [1], [3], [3])
    assert all(np.array_equal(r.agnostic, out[0].agnostic) for r in out)
    assert len({r.image.tobytes() for r in out}) == 3
    built.clear()
    stage.run_batch([a[0], b[0], a[0]], cloths, [a[2], b[2], a[2]], [a[3], b[3], a[3]])
    assert len(built) == 2 and person_half.batches[-1] == 2 and garment_half.batches[-1] == 3


def test_distinct_persons_compares_values_and_types():
    person = np.zeros((256, 192, 3), np.uint8)
    labels, keypoints = np.zeros((256, 192), np.uint8), np.ones((16, 2))
    other = person.copy()
    other[0, 0, 0] = 1
    firsts, owners = distinct_persons([person, person.copy(), other, person], [labels] * 4,
                                      [keypoints, keypoints.copy(), keypoints, keypoints.astype(np.float32)])
    assert firsts == [0, 2, 3] and owners.tolist() == [0, 0, 1, 2]  # float32 keypoints: checked on their own


@pytest.fixture(scope="module")
def viton_garments():
    import cv2

    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted((viton_dir() / "cloth").glob("*.jpg"))]


def _dressed(stage, garments, batched: bool):
    person, _, labels, keypoints = sample("grayxu")
    if not batched:
        return [stage.run(person, garment, labels, keypoints) for garment in garments]
    n = len(garments)
    return stage.run_batch([person] * n, garments, [labels] * n, [keypoints] * n)


def _steps(new, old, what: str) -> np.ndarray:
    return np.stack([abs(getattr(a, what).astype(int) - getattr(b, what)) for a, b in zip(new, old)])


@pytest.mark.exact
def test_gmm_halves_give_the_whole_gmms_bytes_alone_and_round_like_a_batch_together(stages, whole_stage,
                                                                                  viton_garments):
    """The 8 VITON garments on one person, through GMM's halves and through gmm.onnx, TOM alike.
    One garment at a time the bytes are the same. Eight at once, the person's features come from a
    batch of one instead of eight: float rounding, as any change of batch size (measured: the
    warped cloth 1 step on 0.02% of values, the try-on 1 step on 1.3% of values; batch 8 against
    batch 1 of the same graphs moves 1.4%)."""
    halves = CpvtonStage(stages["grayxu"].gmm, whole_stage.tom, "grayxu", stages["grayxu"].gmm_person)
    for batched in (False, True):
        new, old = _dressed(halves, viton_garments, batched), _dressed(whole_stage, viton_garments, batched)
        warped, images = _steps(new, old, "warped_cloth"), _steps(new, old, "image")
        if not batched:
            assert warped.max() == 0 and images.max() == 0
        else:
            assert warped.max() <= 1 and (warped > 0).mean() < 0.005
            assert images.max() <= 1 and (images > 0).mean() < 0.03


def test_winograd_tom_moves_the_try_on_by_one_step_on_a_few_pixels(stages, whole_stage, viton_garments):
    """tom.winograd.onnx against tom.onnx, the same GMM, the 8 VITON garments one at a time and
    together: at most one uint8 step, on under 0.1% of the pixels (measured: 0.014%, worst garment
    0.026%); the warped cloth is GMM's and does not move."""
    winograd = CpvtonStage(whole_stage.gmm, stages["grayxu"].tom, "grayxu")
    for batched in (False, True):
        new, old = _dressed(winograd, viton_garments, batched), _dressed(whole_stage, viton_garments, batched)
        images = _steps(new, old, "image")
        assert _steps(new, old, "warped_cloth").max() == 0
        assert images.max() <= 1 and 0 < (images.max(-1) > 0).mean() < 0.001


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
