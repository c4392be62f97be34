"""`tryon run` over many pairs and `tryon cache`, run as a user runs them: in a subprocess."""
import cv2
import numpy as np
import pytest
from test_cli import tryon
from tryon.cli import app
from tryon.stages.parse import ParseStage
from typer.testing import CliRunner

FAST = ("--scales", "1.0", "--no-mirror", "--provider", "cpu", "--no-need-pre")


@pytest.fixture()
def photos(tmp_path, viton_pair):
    """A person folder (two good photos and garbage between them) and a garment folder."""
    person, cloth = viton_pair
    people, garments = tmp_path / "people", tmp_path / "garments"
    people.mkdir(), garments.mkdir()
    (people / "a.jpg").write_bytes(person.read_bytes())
    (people / "b_garbage.jpg").write_bytes(b"not a photo at all")
    cv2.imwrite(str(people / "c.png"), cv2.flip(cv2.imread(str(person)), 1))
    (garments / "shirt.jpg").write_bytes(cloth.read_bytes())
    cv2.imwrite(str(garments / "red.png"), np.full((300, 200, 3), (0, 0, 200), np.uint8))
    return people, garments


def test_a_batch_goes_on_past_a_bad_photo_and_names_it(tiny_models_dir, photos, tmp_path):
    people, garments = photos
    out = tmp_path / "out"
    done = tryon("run", people, garments, "-o", out, "--models", tiny_models_dir, "--cache", tmp_path / "c", *FAST)
    assert done.returncode == 4, done.stderr
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == ["a__red.png", "a__shirt.png", "c__red.png", "c__shirt.png"]
    assert "wrote 4 of 6 results; 2 failed" in done.stderr
    assert done.stderr.count("b_garbage.jpg") == 2 and "not a JPEG, PNG, BMP or WebP" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_garment_fails_alone_between_good_ones(tiny_models_dir, photos, tmp_path):
    people, garments = photos
    (garments / "b_torn.jpg").write_bytes(b"not a garment either")
    out = tmp_path / "out"
    done = tryon("run", people / "a.jpg", garments, "-o", out, "--models", tiny_models_dir, "--cache",
                 tmp_path / "c", *FAST)
    assert done.returncode == 4, done.stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["a__red.png", "a__shirt.png"]
    assert "wrote 2 of 3 results; 1 failed" in done.stderr
    assert "a.jpg + b_torn.jpg: garment photo: not a JPEG" in done.stderr and "Traceback" not in done.stderr


def test_one_person_many_garments_parses_the_person_once(tiny_models_dir, viton_pair, tmp_path, monkeypatch):
    person, cloth = viton_pair
    runs = []
    original = ParseStage.run
    monkeypatch.setattr(ParseStage, "run", lambda self, rgb: runs.append(1) or original(self, rgb))
    red = tmp_path / "red.png"
    cv2.imwrite(str(red), np.full((256, 192, 3), (0, 0, 200), np.uint8))
    def run(out):
        return CliRunner().invoke(app, ["run", str(person), str(cloth), str(red), "-o", str(tmp_path / out),
                                        "--models", str(tiny_models_dir), "--cache", str(tmp_path / "store"), *FAST])

    result = run("out")
    assert result.exit_code == 0, result.output
    assert len(runs) == 1 and len(list((tmp_path / "out").glob("*.png"))) == 2
    again = run("again")  # a later run on the same photo takes the parse from the store
    assert again.exit_code == 0, again.output
    assert len(runs) == 1 and len(list((tmp_path / "again").glob("*.png"))) == 2


def test_nothing_is_overwritten_without_asking(tiny_models_dir, viton_pair, tmp_path):
    person, cloth = viton_pair
    photo = tmp_path / "x.png"
    photo.write_bytes(cv2.imencode(".png", cv2.imread(str(person)))[1].tobytes())
    before = photo.read_bytes()
    onto_input = tryon("run", photo, cloth, "-o", photo, "--models", tiny_models_dir, *FAST)
    assert onto_input.returncode == 4 and "is one of the inputs" in onto_input.stderr
    assert photo.read_bytes() == before
    result = tmp_path / "result.png"
    result.write_bytes(b"an earlier result")
    kept = tryon("run", photo, cloth, "-o", result, "--models", tiny_models_dir, *FAST)
    assert kept.returncode == 4 and "exist already; pass --overwrite" in kept.stderr
    assert result.read_bytes() == b"an earlier result"
    replaced = tryon("run", photo, cloth, "-o", result, "--overwrite", "--models", tiny_models_dir, *FAST)
    assert replaced.returncode == 0, replaced.stderr
    assert cv2.imread(str(result)).shape == (256, 192, 3)


def test_colliding_result_names_are_made_unique(tiny_models_dir, viton_pair, tmp_path):
    person, cloth = viton_pair
    folder = tmp_path / "people"
    folder.mkdir()
    (folder / "x.jpg").write_bytes(person.read_bytes())
    cv2.imwrite(str(folder / "x.png"), cv2.imread(str(person)))
    out = tmp_path / "out"
    done = tryon("run", folder, cloth, "-o", out, "--models", tiny_models_dir, *FAST)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.glob("*.png")) == [f"x-jpg__{cloth.stem}-jpg.png", f"x-png__{cloth.stem}-jpg.png"]


@pytest.mark.parametrize("target", ["parent is a file", "many pairs into an image name", "a format not written"])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tiny_models_dir, viton_pair, tmp_path, target):
    person, cloth = viton_pair
    (tmp_path / "file").write_text("x")
    if target == "parent is a file":
        done = tryon("run", person, cloth, "-o", tmp_path / "file" / "out.png", "--models", tiny_models_dir, *FAST)
        words = "cannot write into"
    elif target == "a format not written":  # N6: exited 0 and made a folder named r.gif
        done = tryon("run", person, cloth, "-o", tmp_path / "r.gif", "--models", tiny_models_dir, *FAST)
        words = "give -o one of those names, or a folder"
        assert not (tmp_path / "r.gif").exists()
    else:
        done = tryon("run", person, cloth, person, "-o", tmp_path / "out.png", "--models", tiny_models_dir, *FAST)
        words = "pairs need a folder"
    assert done.returncode == 4 and words in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr


def test_cache_info_and_clear(tiny_models_dir, viton_pair, tmp_path):
    store = tmp_path / "store"
    done = tryon("run", *viton_pair, "-o", tmp_path / "o.png", "--models", tiny_models_dir, "--cache", store, *FAST)
    assert done.returncode == 0, done.stderr
    info = tryon("cache", "info", "--cache", store)
    assert info.returncode == 0 and "persons: 1" in info.stdout and "24 h" in info.stdout
    cleared = tryon("cache", "clear", "--cache", store)
    assert cleared.returncode == 0 and "removed 1 parsed person" in cleared.stdout
    assert "persons: 0" in tryon("cache", "info", "--cache", store).stdout
    memory = tryon("run", *viton_pair, "-o", tmp_path / "p.png", "--models", tiny_models_dir, "--cache", store,
                   "--no-cache", *FAST)
    assert memory.returncode == 0 and "persons: 0" in tryon("cache", "info", "--cache", store).stdout


def test_only_the_projects_own_errors_become_one_line_exits(tiny_models_dir, viton_pair, tmp_path, monkeypatch):
    """A ValueError from deep inside is a bug: it keeps its traceback (exit 1) instead of
    passing for bad input (exit 4)."""
    from tryon.cli import run_cmd
    from tryon.errors import InputError

    args = ["run", *map(str, viton_pair), "-o", str(tmp_path / "o.png"), "--models", str(tiny_models_dir), *FAST]
    monkeypatch.setattr(run_cmd, "check_outputs", lambda *a: (_ for _ in ()).throw(ValueError("a bug")))
    bug = CliRunner().invoke(app, args)
    assert bug.exit_code == 1 and isinstance(bug.exception, ValueError)
    monkeypatch.setattr(run_cmd, "check_outputs", lambda *a: (_ for _ in ()).throw(InputError("bad input")))
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 4 and "error: bad input" in refused.output


def test_a_low_confidence_is_written_with_a_warning_and_a_refusal_is_not(tiny_models_dir, viton_pair, tmp_path,
                                                                          monkeypatch):
    """Issue 22, N14: both were "N of N photos were refused (...the photo is written in place of a
    try-on)", though a low confidence's try-on was written, as the catalogue's ledger tells."""
    from dataclasses import replace

    from tryon import pipeline

    person, cloth = viton_pair
    dress = pipeline.TryOn.dress
    monkeypatch.setattr(pipeline.TryOn, "dress", lambda *a, **k: [replace(r, confidence=0.05) for r in dress(*a, **k)])
    args = [str(person), str(cloth), "--models", str(tiny_models_dir), "--no-cache", *FAST]
    low = CliRunner().invoke(app, ["run", *args, "-o", str(tmp_path / "low.png")])
    assert low.exit_code == 0, low.output
    assert (tmp_path / "low.png").is_file() and "refused" not in low.output
    assert f"warning: {person}: confidence 0.050, below 0.1" in low.output and "try-ons are written" in low.output

    monkeypatch.setattr(pipeline, "crossed_arms", lambda keypoints: True)
    refused = CliRunner().invoke(app, ["run", *args, "--check-dirty", "-o", str(tmp_path / "refused.png")])
    assert refused.exit_code == 4 and not (tmp_path / "refused.png").exists()
    assert "wrote 0 of 1 results; 1 refused (no image written)" in refused.output
    assert f"{person.name} + {cloth.name}: crossed arms" in refused.output
