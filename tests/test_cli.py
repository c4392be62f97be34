"""The tryon command, run as a user runs it: in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
from serve_process import free_port
from tryon.cpu import cpu_flags

TRYON = str(Path(sys.executable).parent / "tryon")


def tryon(*args, cwd=None, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([TRYON, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def test_help_lists_every_verb_with_examples():
    done = tryon("--help")
    assert done.returncode == 0
    for verb in ("synth", "export", "validate", "run", "info", "demo"):
        assert verb in done.stdout
    assert "tryon run person.jpg shirt.jpg -o out.png" in tryon("run", "--help").stdout


def test_run_one_pair_and_intermediates(tiny_models_dir, viton_pair, tmp_path):
    person, cloth = viton_pair
    out = tmp_path / "out.png"
    done = tryon("run", person, cloth, "-o", out, "--models", tiny_models_dir, "--no-need-pre",
                 "--keep-back", "--save-intermediates", tmp_path / "steps", "--provider", "cpu")
    assert done.returncode == 0, done.stderr
    assert cv2.imread(str(out)).shape == (256, 192, 3)
    assert "total" in done.stdout and "SYNTHETIC" in done.stderr
    sheet = cv2.imread(str(tmp_path / "steps" / "out_sheet.png"))
    assert sheet.shape[1] > 192 * 6


def test_run_many_from_a_pairs_file(tiny_models_dir, viton_pair, tmp_path):
    person, cloth = viton_pair
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"{person} {cloth}\n# a comment\n{person} {cloth}\n")
    done = tryon("run", "--pairs", pairs, "-o", tmp_path / "many", "--models", tiny_models_dir, "--no-need-pre")
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "many").glob("*.png"))) == 1  # both lines name the same output


def test_errors_a_shell_user_can_act_on(tiny_models_dir, viton_pair, tmp_path):
    person, cloth = viton_pair
    missing = tryon("run", person, cloth, "-o", tmp_path / "o.png", "--models", tmp_path / "nowhere")
    assert missing.returncode == 3 and "run `tryon export` first" in missing.stderr
    assert "Traceback" not in missing.stderr
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not a jpeg")
    bad = tryon("run", junk, cloth, "-o", tmp_path / "o.png", "--models", tiny_models_dir)
    assert bad.returncode == 4 and "person photo: not a JPEG, PNG, BMP or WebP" in bad.stderr
    scales = tryon("run", person, cloth, "-o", tmp_path / "o.png", "--models", tiny_models_dir, "--scales", "x")
    assert scales.returncode == 4 and "--scales" in scales.stderr
    assert not (tmp_path / "o.png").exists()


def test_fast_modes_that_cannot_run_say_what_to_do(tiny_models_dir, viton_pair, tmp_path):
    fp16 = tryon("serve", "--models", tiny_models_dir, "--provider", "cpu", "--precision", "fp16",
                 "--port", free_port())  # bound before the models load: a port anyone may bind
    assert fp16.returncode == 4 and "fp16 is for the CUDA provider" in fp16.stderr
    int8 = tryon("run", *viton_pair, "-o", tmp_path / "o.png", "--models", tiny_models_dir,
                 "--provider", "cpu", "--precision", "int8")
    assert int8.returncode == 3 and "`tryon quantize --precision int8 PHOTO ...` first" in int8.stderr
    wrong = tryon("quantize", viton_pair[0], "--models", tiny_models_dir, "--precision", "fp8")
    assert wrong.returncode == 4 and "precision 'fp8' is not one of int8, fp16" in wrong.stderr
    assert "Traceback" not in fp16.stderr + int8.stderr + wrong.stderr
    assert not (tmp_path / "o.png").exists() and not list(tiny_models_dir.glob("jppnet.*8*"))


def test_info_reports_providers_in_use_and_synthetic_models(tiny_models_dir):
    done = tryon("info", "--models", tiny_models_dir, "--provider", "cpu")
    assert done.returncode == 0, done.stderr
    assert "providers available:" in done.stdout
    cpu_line = next(line for line in done.stdout.splitlines() if line.startswith("cpu: "))
    assert ("AVX2" in cpu_line) == ("avx2" in cpu_flags()) and "cores" in cpu_line
    assert done.stdout.count("SYNTHETIC") == 3
    assert "providers in use: CPUExecutionProvider" in done.stdout
    for stage, file in (("parse", "jppnet.winograd.onnx"), ("gmm_person", "gmm_person.onnx"),
                        ("gmm", "gmm_garment.onnx"), ("tom", "tom.winograd.onnx")):
        assert f"fp32 {stage} runs {file} on CPUExecutionProvider" in done.stdout
    assert "--precision int8: not written (`tryon quantize --precision int8 PHOTO ...`)" in done.stdout


def test_demo_from_nothing_on_reduced_models(tmp_path):
    done = tryon("demo", "--checkpoints", tmp_path / "ckpt", "--models", tmp_path / "models",
                 "--out", tmp_path / "out", "--jppnet", "reduced", "--provider", "cpu")
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "SYNTHETIC", "total"):
        assert step in done.stdout
    assert cv2.imread(str(tmp_path / "out" / "result.png")).shape == (256, 192, 3)
    assert (tmp_path / "out" / "demo_sheet.png").is_file()
    again = tryon("demo", "--checkpoints", tmp_path / "ckpt", "--models", tmp_path / "models",
                  "--out", tmp_path / "out", "--jppnet", "reduced", "--provider", "cpu")
    assert again.returncode == 0 and "already holds validated exports" in again.stdout


def test_validate_reruns_the_framework_check(tiny_checkpoints, tiny_models_dir):
    done = tryon("validate", "--checkpoints", tiny_checkpoints, "--models", tiny_models_dir)
    assert done.returncode == 0, done.stderr
    for name in ("gmm", "tom", "jppnet"):
        assert f"{name}: validation passed" in done.stdout


def test_synth_and_export_refuse_bad_arguments(tmp_path):
    family = tryon("synth", "--out", tmp_path / "s", "--family", "viton-hd")
    assert family.returncode == 4 and "family 'viton-hd' is not one of grayxu, cpvton" in family.stderr
    empty = tryon("export", "--checkpoints", tmp_path, "--out", tmp_path / "models")
    assert empty.returncode == 6 and "checkpoints missing" in empty.stderr and "jpp.pb" in empty.stderr


def test_a_missing_onnxruntime_names_the_extra_to_install(tiny_models_dir, tmp_path):
    fake = tmp_path / "site" / "onnxruntime"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run([TRYON, "info", "--models", str(tiny_models_dir)], capture_output=True, text=True, env=env)
    assert done.returncode == 5 and "pip install 'tryon-onnx[cpu]'" in done.stderr
    assert "Traceback" not in done.stderr
