"""tryon catalogue: naming, refusals, the ledger and resume, a killed run; Ray against local."""
import json
import shutil
import subprocess
import sys

import pytest
from shared_data import viton_dir
from tryon.catalogue import plan as cat
from tryon.catalogue import work
from tryon.catalogue.ledger import Ledger
from tryon.catalogue.plan import LEDGER, Catalogue, name_inputs
from tryon.cli import app
from tryon.errors import InputError
from tryon.pipeline import DRESS_BATCH
from typer.testing import CliRunner

FAST = ["--no-need-pre", "--scales", "1.0", "--no-mirror", "--no-cache", "--provider", "cpu"]


def touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_colliding_stems_get_their_file_names_and_true_clashes_are_refused(tmp_path):
    folder = touch(tmp_path / "p", "X.jpg", "x.png", "y.jpg")
    assert [i.name for i in name_inputs(cat.list_images(folder, "person"), "person")] == ["X.jpg", "x.png", "y"]
    touch(folder, "x.jpg.png")  # its stem, x.jpg, is the name x.jpg was given
    with pytest.raises(InputError, match=r"share an output name: X\.jpg and x\.jpg\.png"):
        name_inputs(cat.list_images(folder, "person"), "person")


def test_an_output_that_would_overwrite_an_input_is_refused_before_any_work(tmp_path):
    persons = touch(tmp_path / "a", "a.jpg", "g.png")  # a.jpg x g.jpg would be written to a/g.png
    garments = touch(tmp_path / "garments", "g.jpg")
    with pytest.raises(InputError, match=r"a/g\.png of a\.jpg x g\.jpg would overwrite an input"):
        Catalogue.plan(persons, garments, tmp_path)
    Catalogue.plan(persons, garments, tmp_path / "elsewhere")  # fine


def test_a_folder_without_images_and_a_bad_pairs_file_say_what_is_accepted(tmp_path):
    persons, garments = touch(tmp_path / "p", "a.jpg", "b.jpg"), touch(tmp_path / "g", "s.jpg", "t.jpg")
    with pytest.raises(InputError, match=r"holds no \.bmp, \.jpeg, \.jpg, \.png, \.webp files"):
        Catalogue.plan(touch(tmp_path / "empty", "notes.txt"), garments, tmp_path / "o")
    listed = tmp_path / "pairs.txt"
    listed.write_text("# person garment\na.jpg s.jpg\na.jpg s.jpg\nb.jpg t.jpg\n")
    plan = Catalogue.plan(persons, garments, tmp_path / "o", listed)
    assert [p.key for p in plan.pairs] == [("a.jpg", "s.jpg"), ("b.jpg", "t.jpg")]  # the repeat once
    listed.write_text("a.jpg s.jpg\nc.jpg s.jpg\na.jpg u.jpg\n")
    with pytest.raises(InputError, match=r"not in the person and garment folders.*line 2: c\.jpg s\.jpg; line 3"):
        Catalogue.plan(persons, garments, tmp_path / "o", listed)
    listed.write_text("a.jpg\n")
    with pytest.raises(InputError, match="line 1: expected 'PERSON GARMENT'"):
        Catalogue.plan(persons, garments, tmp_path / "o", listed)


def test_batches_are_per_person_and_skip_what_is_done(tmp_path):
    garments = [f"g{i:02d}.jpg" for i in range(DRESS_BATCH + 3)]
    plan = Catalogue.plan(touch(tmp_path / "p", "a.jpg", "b.jpg"), touch(tmp_path / "g", *garments), tmp_path / "o")
    batches = plan.batches({("a.jpg", "g00.jpg")})
    assert [(p.name, len(gs)) for p, gs in batches] == [("a", DRESS_BATCH), ("a", 2), ("b", DRESS_BATCH), ("b", 3)]
    assert batches[0][1][0].name == "g01"


def test_the_ledger_survives_a_torn_line_and_admits_one_writer(tmp_path):
    ledger = Ledger(tmp_path)
    (tmp_path / LEDGER).write_text(json.dumps({"person": "a.jpg", "garment": "s.jpg", "status": "ok"}) + '\n{"person": "b.j')
    with ledger:
        ledger.append({"person": "b.jpg", "garment": "s.jpg", "status": "failed"})
        with pytest.raises(InputError, match="another tryon catalogue is writing"):
            with Ledger(tmp_path):
                pass
    assert set(ledger.read()) == {("a.jpg", "s.jpg"), ("b.jpg", "s.jpg")}
    assert (tmp_path / LEDGER).read_text().splitlines()[2].startswith('{"person": "b.jpg"')


def test_runtime_modules_import_without_ray_or_redis():
    """Only catalogue_ray (and the Redis store) need the extras, and they import them lazily."""
    code = ("import sys, pkgutil, importlib, tryon as r\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('ray', 'redis'): raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "names = [m.name for m in pkgutil.walk_packages(r.__path__, 'tryon.')]\n"
            "[importlib.import_module(n) for n in names]\n"
            "assert 'tryon.catalogue.ray_engine' in names\n"
            "print('imported', len(names))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr[-2000:]


# -- with models -------------------------------------------------------------------------


@pytest.fixture()
def inputs(tmp_path):
    return make_inputs(tmp_path)


def make_inputs(tmp_path):
    """2 VITON persons, 3 garments and a garment that is not an image."""
    persons, garments = tmp_path / "persons", tmp_path / "garments"
    persons.mkdir(), garments.mkdir()
    for photo in sorted((viton_dir() / "person").glob("*.jpg"))[:2]:
        shutil.copy(photo, persons)
    for cloth in sorted((viton_dir() / "cloth").glob("*.jpg"))[:3]:
        shutil.copy(cloth, garments)
    (garments / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return persons, garments


def catalogue(*args):
    return CliRunner().invoke(app, ["catalogue", *map(str, args)])


def images(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.glob("*/*.png"))}


@pytest.mark.parametrize("where", ["the ledger is a folder", "the folder is under a file"])
def test_an_output_folder_that_cannot_hold_a_ledger_is_one_line(tiny_models_dir, inputs, tmp_path, where):
    """N2: exit 1 with a traceback before."""
    persons, garments = inputs
    out = tmp_path / "out"
    if where == "the ledger is a folder":
        (out / LEDGER).mkdir(parents=True)
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    done = catalogue(persons, garments, "-o", out, "--models", tiny_models_dir, *FAST)
    assert done.exit_code == 4 and "cannot write the ledger" in done.output, done.output
    assert "Traceback" not in done.output and isinstance(done.exception, (SystemExit, type(None)))


def test_render_record_resume_and_a_changed_setting(tiny_models_dir, inputs, tmp_path):
    persons, garments = inputs
    out = tmp_path / "out"
    first = catalogue(persons, garments, "-o", out, "--models", tiny_models_dir, *FAST)
    assert first.exit_code == 1, first.output  # the torn garment has no image
    written = images(out)
    assert len(written) == 6 and all(name.split("/")[1] != "torn.png" for name in written)
    lines = [json.loads(line) for line in (out / LEDGER).read_text().splitlines()]
    assert len(lines) == 8
    failed = [line for line in lines if line["status"] == "failed"]
    assert len(failed) == 2 and all("garment torn.png: the PNG header is truncated" in f["reason"] for f in failed)
    good = [line for line in lines if line["status"] != "failed"]
    assert {line["status"] for line in good} <= {"ok", "low_confidence"}
    assert all(line["models"]["tom"] and line["timings_ms"]["dress"] > 0 for line in good)
    assert "2 failed" in first.output and "torn.png" in first.output

    (garments / "torn.png").unlink()  # the user fixes the input and runs again: nothing to do
    again = catalogue(persons, garments, "-o", out, "--models", tiny_models_dir, *FAST)
    assert again.exit_code == 0, again.output
    assert "6 done before, 0 to render" in again.output and images(out) == written
    assert len((out / LEDGER).read_text().splitlines()) == 8

    changed = catalogue(persons, garments, "-o", out, "--models", tiny_models_dir, *FAST, "--keep-back")
    assert changed.exit_code == 0 and "0 done before, 6 to render" in changed.output
    assert images(out).keys() == written.keys() and images(out) != written


def test_a_bad_person_photo_fails_only_its_own_pairs(tiny_models_dir, inputs, tmp_path):
    persons, garments = inputs
    (garments / "torn.png").unlink()
    (persons / "blank.jpg").write_bytes(b"")
    done = catalogue(persons, garments, "-o", tmp_path / "out", "--models", tiny_models_dir, *FAST)
    assert done.exit_code == 1
    lines = [json.loads(line) for line in (tmp_path / "out" / LEDGER).read_text().splitlines()]
    assert [line["status"] for line in lines if line["person"] == "blank.jpg"] == ["failed"] * 3
    assert all(line["reason"].startswith("person photo blank.jpg: not a JPEG")
               for line in lines if line["person"] == "blank.jpg")
    assert len(images(tmp_path / "out")) == 6


def test_a_killed_run_keeps_what_it_wrote_and_the_rerun_finishes(tiny_models_dir, inputs, tmp_path, monkeypatch):
    persons, garments = inputs
    (garments / "torn.png").unlink()
    out = tmp_path / "out"
    real, calls = work.dress_batch, []

    def dies_in_the_second_batch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or kill between two batches
        return real(*args)

    monkeypatch.setattr(work, "dress_batch", dies_in_the_second_batch)
    killed = catalogue(persons, garments, "-o", out, "--models", tiny_models_dir, *FAST)
    assert killed.exit_code != 0
    kept = images(out)
    assert len(kept) == 3 and len((out / LEDGER).read_text().splitlines()) == 3
    assert not list(out.rglob("*.partial"))
    monkeypatch.setattr(work, "dress_batch", real)
    rerun = catalogue(persons, garments, "-o", out, "--models", tiny_models_dir, *FAST)
    assert rerun.exit_code == 0 and "3 done before, 3 to render" in rerun.output
    assert len(images(out)) == 6 and {k: images(out)[k] for k in kept} == kept


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'tryon-onnx[ray]'")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_the_ray_engine_renders_the_same_bytes_as_the_local_one(ray_cluster, tiny_models_dir, inputs, tmp_path):
    persons, garments = inputs
    local = catalogue(persons, garments, "-o", tmp_path / "local", "--models", tiny_models_dir, *FAST)
    on_ray = catalogue(persons, garments, "-o", tmp_path / "ray", "--models", tiny_models_dir, *FAST,
                       "--engine", "ray", "--workers", "1")
    assert local.exit_code == on_ray.exit_code == 1, on_ray.output  # the torn garment, on both
    assert ray_cluster.is_initialized()  # joined the test's cluster, left it running
    rendered = images(tmp_path / "local")
    assert len(rendered) == 6 and images(tmp_path / "ray") == rendered

    def outcomes(folder):
        lines = [json.loads(line) for line in (folder / LEDGER).read_text().splitlines()]
        return sorted((l["person"], l["garment"], l["status"], l["confidence"], l["reason"], l["engine"]) for l in lines)
    assert [o[:5] for o in outcomes(tmp_path / "ray")] == [o[:5] for o in outcomes(tmp_path / "local")]
    assert {o[5] for o in outcomes(tmp_path / "ray")} == {"ray"}


class GatedWorker:
    """A Worker (made a subclass in the test) that holds every person but the first it dresses
    until the driver says it has received that first person's pairs."""
    release: str = ""  # a file the driver creates
    waited_out: str = ""  # a file this writes when the driver never did

    def dress(self, parsed, timings, garments):
        import time
        from pathlib import Path

        self.first = getattr(self, "first", parsed)
        if parsed != self.first:
            deadline = time.monotonic() + 30
            while not Path(self.release).exists():
                if time.monotonic() > deadline:
                    Path(self.waited_out).write_text("the second person")
                    break
                time.sleep(0.05)
        return super().dress(parsed, timings, garments)


def test_the_ray_engine_hands_over_a_person_before_the_next_is_dressed(ray_cluster, tiny_models_dir, inputs,
                                                                        tmp_path, monkeypatch):
    """Images stream: the driver gets a dressed person's pairs while the next person waits."""
    from ray import cloudpickle
    from tryon.catalogue import ray_engine as catalogue_ray
    from tryon.catalogue.plan import Settings
    from tryon.options import ParseOptions

    release, waited_out = tmp_path / "release", tmp_path / "waited-out"
    gated = type("Gated", (GatedWorker, catalogue_ray.Worker), {"release": str(release), "waited_out": str(waited_out)})
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    monkeypatch.setattr(catalogue_ray, "Worker", gated)
    persons, garments = inputs
    plan = Catalogue.plan(persons, garments, tmp_path / "out")
    settings = Settings(str(tiny_models_dir), "cpu", scales=(1.0,), mirror=False, parse=ParseOptions(need_pre=False))
    received = []
    try:
        for person, _, _ in catalogue_ray.render_ray(settings, plan.batches(), catalogue_ray.given_workers(1, 1)):
            received.append(person)
            release.touch()
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert not waited_out.exists(), f"{waited_out.read_text()} waited 30 s: the first person's pairs never came"
    assert len(received) == 2 * 4 and len(set(received[:4])) == 1


def test_the_throughput_benchmark_writes_a_record(tiny_models_dir, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "catalogue.py"
    spec = importlib.util.spec_from_file_location("catalogue_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--models", str(tiny_models_dir), "--persons", "2", "--garments", "2", "--engine", "local",
                "--engine", "local", "--scales", "1.0", "--no-mirror", "--out", str(tmp_path)])
    record = json.loads(next(tmp_path.glob("catalogue-fp32-p2g2-*.json")).read_text())
    assert record["jppnet_variant"] == "reduced" and record["synthetic_weights"]
    assert [run["pairs"] for run in record["runs"]] == [4, 4]
    assert all(run["statuses"].get("failed", 0) == 0 and run["same_images_as_first_engine"] for run in record["runs"])
    assert all(run["pairs_per_min"] > 0 and run["parse_ms_per_person"] > 0 for run in record["runs"])
    assert record["summary"]["local"]["runs"] == 2 and record["summary"]["local"]["vs_local"] == 1.0
    assert len(record["summary"]["local"]["load"]) == 2  # the load average each run started under
    with pytest.raises(SystemExit, match="expected local, ray or ray:WxC"):
        bench.parse_engine("ray:2x1x1")
    assert bench.parse_engine("ray:2x0.5") == {"engine": "ray", "label": "ray:2x0.5", "workers": 2,
                                               "cpus_per_worker": 0.5}


def test_an_actor_that_cannot_start_says_why_in_one_line(ray_cluster, tiny_models_dir, inputs, tmp_path):
    persons, garments = inputs
    done = catalogue(persons, garments, "-o", tmp_path / "out", "--models", tiny_models_dir, *FAST,
                     "--engine", "ray", "--precision", "int8")
    assert done.exit_code == 3, done.output  # models missing, as the local engine says it
    assert "on a Ray worker:" in done.output and "has no int8 JPP-Net: run `tryon quantize" in done.output


def test_more_workers_than_the_cluster_has_cpus_is_refused(ray_cluster):
    from tryon.catalogue.ray_engine import _check_cpus, given_workers

    _check_cpus(ray_cluster, given_workers(2, 1), fixed=True)  # the 2-CPU test cluster
    with pytest.raises(InputError, match=r"3 workers of 0.9 CPUs and 1 threads need 2.7 CPUs; the Ray cluster has 2: "
                                         r"ask for fewer \(--workers, --cpus-per-worker\)"):
        _check_cpus(ray_cluster, given_workers(3, 0.9), fixed=True)
    _check_cpus(ray_cluster, given_workers(3, 0.9), fixed=False)  # a cluster that may autoscale: a warning


def test_one_worker_per_node_with_all_of_its_cpus():
    from tryon.catalogue.ray_engine import Place, describe, fit_workers, given_workers

    assert fit_workers({"a": 2}) == [Place(2, 2, "a")]
    assert fit_workers({"a": 1, "b": 2, "c": 0.5}) == [Place(1, 1, "a"), Place(2, 2, "b"), Place(0.5, 1, "c")]
    assert describe(fit_workers({"a": 16, "b": 4, "c": 16})) == ("1 worker of 4 CPUs and 4 threads, "
                                                                 "2 workers of 16 CPUs and 16 threads")
    assert given_workers(2, 1.5) == [Place(1.5, 2, None)] * 2  # anywhere, its threads rounded up


def test_a_worker_on_a_node_with_other_models_refuses_to_start(tiny_models_dir):
    from tryon.catalogue.plan import Settings
    from tryon.catalogue.ray_engine import Worker
    from tryon.models.graphs import model_hashes

    settings = Settings(str(tiny_models_dir), "cpu", scales=(1.0,), mirror=False)
    driver = model_hashes(tiny_models_dir, "fp32")
    assert Worker(settings, 1, driver, {}).tryon is not None
    with pytest.raises(InputError, match="are not the ones this catalogue runs with.*give every node the same"):
        Worker(settings, 1, {**driver, "tom": "0" * 64}, {})


def test_an_error_of_the_machine_stops_the_run_and_an_odd_photo_fails_alone():
    import numpy as np
    from tryon.errors import RuntimeSetupError
    from tryon.images import encode
    from tryon.options import ParseOptions

    class Pipeline:
        def __init__(self, error):
            self.error = error

        def parse_call(self, *args, **kwargs):
            raise self.error

    photo = work.Photo("a.png", encode(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(RuntimeSetupError):
        work.parse_photo(Pipeline(RuntimeSetupError("onnxruntime is not installed")), photo, ParseOptions())
    parsed, why = work.parse_photo(Pipeline(ZeroDivisionError("odd")), photo, ParseOptions())
    assert parsed is None and why == "person photo a.png: unexpected ZeroDivisionError: odd"
