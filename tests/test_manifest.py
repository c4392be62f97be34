"""manifest.json as typed records: real entries round-trip exactly, a misshapen manifest or
entry is refused, and no code outside runtime/models/manifest.py reads the raw keys."""
import json
import re
import shutil
from pathlib import Path

import pytest
from tryon.errors import ModelsMissingError
from tryon.export import manifest as export_manifest
from tryon.models.manifest import Agreement, Manifest, ManifestStructureError, ModelEntry, ModelSource
from tryon.models.model_dir import ModelDir

ROOT = Path(__file__).resolve().parent.parent

# Entries of a full-size export with an int8 graph (models_onnx/manifest.json), as written.
GMM = {'file': 'gmm.onnx',
       'family': 'grayxu',
       'opset': 17,
       'source': {'path': '/work/main/checkpoints/synthetic/gmm.pth',
                  'sha256': '644311e858785783e6695f34cd4b758122af65e76eceb30746e9bb9b28e135f9',
                  'format': 'torch state_dict',
                  'synthetic': True},
       'validation': {'max_abs_diff': {'theta': 5.444511771202087e-06,
                                       'grid': 1.2159347534179688e-05,
                                       'warped_cloth': 0.0016006827354431152},
                      'uint8_steps': {'warped_cloth': {'max_step': 1, 'fraction': 0.0015784369574652778}},
                      'tolerance': {'theta': 0.0001,
                                    'grid': 0.0001,
                                    'warped_cloth': {'uint8_max_step': 1, 'uint8_max_fraction': 0.02}},
                      'passed': True,
                      'inputs': 'synthetic person-like agnostic (runtime.agnostic from a drawn LIP label map, '
                                'keypoints and smooth photo) and garment photos with hard edges, stripes, a print '
                                'and JPEG texture: batch 1, batch 4, and one person in 4 garments'},
       'sha256': '3bfc18d37fe5a80df43f43f2459c4b99758f2c8a9f354901de64520d3b090126',
       'bytes': 81156548,
       'inputs': [{'name': 'agnostic', 'shape': ['N', 20, 256, 192], 'dtype': 'float32'},
                  {'name': 'cloth', 'shape': ['N', 3, 256, 192], 'dtype': 'float32'}],
       'outputs': [{'name': 'theta', 'shape': ['N', 50], 'dtype': 'float32'},
                   {'name': 'grid', 'shape': ['N', 256, 192, 2], 'dtype': 'float32'},
                   {'name': 'warped_cloth', 'shape': ['N', 3, 256, 192], 'dtype': 'float32'}],
       'tools': {'onnx': '1.23.2',
                 'onnxruntime': '1.32.0',
                 'torch': '2.13.0+cpu',
                 'tensorflow-cpu': '2.21.0',
                 'tf2onnx': '1.17.0',
                 'onnxscript': '0.7.2',
                 'numpy': '2.4.6'},
       'exported_at': '2026-12-03T17:59:18+00:00'}
TOM_WINOGRAD = {'file': 'tom.winograd.onnx',
                'family': 'grayxu',
                'opset': 17,
                'source': {'path': '/work/main/checkpoints/synthetic/tom.pth',
                           'sha256': 'ced11fc3a6376d3983fc22e5e9887202b9a9bd4ebeff93aafd92336f931f8b37',
                           'format': 'torch state_dict',
                           'synthetic': True},
                'winograd_convolutions': 2,
                'validation': {'max_abs_diff': {'rendered': 2.9735267162322998e-05,
                                                'mask': 7.510185241699219e-06,
                                                'tryon': 1.9848346710205078e-05},
                               'uint8_steps': {},
                               'tolerance': {'rendered': 0.001, 'mask': 0.001, 'tryon': 0.001},
                               'passed': True,
                               'inputs': 'synthetic person-like agnostic (runtime.agnostic from a drawn LIP label '
                                         'map, keypoints and smooth photo) and garment photos with hard edges, '
                                         'stripes, a print and JPEG texture: batch 1, batch 4, and one person in 4 '
                                         'garments'},
                'sha256': '574a444aefecae699afa19d2cbeb19c38ffd6b0b69ff94129501c30706e11fd4',
                'bytes': 94289391,
                'inputs': [{'name': 'agnostic', 'shape': ['N', 20, 256, 192], 'dtype': 'float32'},
                           {'name': 'warped_cloth', 'shape': ['N', 3, 256, 192], 'dtype': 'float32'}],
                'outputs': [{'name': 'rendered', 'shape': ['N', 3, 256, 192], 'dtype': 'float32'},
                            {'name': 'mask', 'shape': ['N', 1, 256, 192], 'dtype': 'float32'},
                            {'name': 'tryon', 'shape': ['N', 3, 256, 192], 'dtype': 'float32'}],
                'tools': {'onnx': '1.23.2',
                          'onnxruntime': '1.32.0',
                          'torch': '2.13.0+cpu',
                          'tensorflow-cpu': '2.21.0',
                          'tf2onnx': '1.17.0',
                          'onnxscript': '0.7.2',
                          'numpy': '2.4.6'},
                'exported_at': '2026-12-03T17:59:59+00:00'}
JPPNET_WINOGRAD = {'file': 'jppnet.winograd.onnx',
                   'variant': 'full',
                   'opset': 17,
                   'source': {'path': '/work/main/checkpoints/synthetic/jpp.pb',
                              'format': 'pb',
                              'sha256': 'fa7f4153db53e5a198ec4487a6216d9608de229ed89f81a150f021cf054d9b7a',
                              'synthetic': True},
                   'validation': {'input': 'smooth synthetic photo + mirror, 384x384, batch 2',
                                  'relative_tolerance': 0.0001,
                                  'parsing': {'max_abs_diff': 3.3855438232421875e-05,
                                              'max_abs_value': 6.314895153045654,
                                              'relative_diff': 5.361203537337196e-06,
                                              'argmax_agreement': 1.0,
                                              'decisive_argmax_mismatches': 0,
                                              'what_argmax': 'labels per pixel',
                                              'passed': True},
                                  'pose': {'max_abs_diff': 7.343292236328125e-05,
                                           'max_abs_value': 9.81256103515625,
                                           'relative_diff': 7.483563373535943e-06,
                                           'argmax_agreement': 1.0,
                                           'decisive_argmax_mismatches': 0,
                                           'what_argmax': 'keypoints per image and joint',
                                           'passed': True},
                                  'max_abs_diff': {'parsing': 3.3855438232421875e-05, 'pose': 7.343292236328125e-05},
                                  'passed': True},
                   'winograd_convolutions': 27,
                   'sha256': '1cace83b388ffbe2cc089b14e3a9d54e99d4cd32f2e92e34837600c01f8ce33f',
                   'bytes': 517676277,
                   'inputs': [{'name': 'image', 'shape': ['N', 'H', 'W', 3], 'dtype': 'float32'}],
                   'outputs': [{'name': 'parsing', 'shape': ['N', 'h', 'w', 20], 'dtype': 'float32'},
                               {'name': 'pose', 'shape': ['N', 'h', 'w', 16], 'dtype': 'float32'}],
                   'tools': {'onnx': '1.23.2',
                             'onnxruntime': '1.32.0',
                             'torch': '2.13.0+cpu',
                             'tensorflow-cpu': '2.21.0',
                             'tf2onnx': '1.17.0',
                             'onnxscript': '0.7.2',
                             'numpy': '2.4.6'},
                   'exported_at': '2026-12-03T18:02:53+00:00'}
JPPNET_INT8 = {'file': 'jppnet.int8.onnx',
               'variant': 'full',
               'precision': 'int8',
               'quantization': {'format': 'QDQ',
                                'weights': 's8 per-channel, 7-bit range (reduce_range: no 16-bit saturation without '
                                           'VNNI)',
                                'reduce_range': True,
                                'activations': 'u8',
                                'calibration': 'MinMax',
                                'photos': ['000010_0.jpg', '000020_0.jpg', '000028_0.jpg', '000038_0.jpg',
                                           '000048_0.jpg', '000066_0.jpg', '000074_0.jpg', '000097_0.jpg']},
               'source': {'fp32': 'jppnet.onnx',
                          'sha256': '24fa4f4e80e1110437ed66adb107b484c740d624b9dd15e0e3dac0143353bb27',
                          'synthetic': True},
               'agreement': {'photos': 8,
                             'scales': [1.0, 0.75, 1.25],
                             'mirror': True,
                             'provider': 'cpu',
                             'jppnet_providers': ['CPUExecutionProvider'],
                             'label_agreement': 0.9241104125976562,
                             'label_agreement_min': 0.9072672526041666,
                             'keypoint_px_median': 7.307886552931954,
                             'keypoint_px_max': 300.8521231435803,
                             'keypoints_within_3px': 0.4140625,
                             'tryon_mean_abs_diff_u8': 33.90400865342882,
                             'calibrated_on_these_photos': True,
                             'cpu': 'AMD EPYC: AVX2 AVX-512 VNNI BF16 (no AMX)',
                             'vector_extensions': ['AVX2', 'AVX-512', 'VNNI', 'BF16']},
               'sha256': 'fe13b394988da263913b1070e66ede972a30421e05f686bddb29b20a739db65a',
               'bytes': 123342105,
               'inputs': [{'name': 'image', 'shape': ['N', 'H', 'W', 3], 'dtype': 'float32'}],
               'outputs': [{'name': 'parsing', 'shape': ['N', 'h', 'w', 20], 'dtype': 'float32'},
                           {'name': 'pose', 'shape': ['N', 'h', 'w', 16], 'dtype': 'float32'}],
               'tools': {'onnx': '1.23.2',
                         'onnxruntime': '1.32.0',
                         'torch': '2.13.0+cpu',
                         'tensorflow-cpu': '2.21.0',
                         'tf2onnx': '1.17.0',
                         'onnxscript': '0.7.2',
                         'numpy': '2.4.6'},
               'exported_at': '2026-12-03T18:31:15+00:00'}
# bf16 records a provider, not a file of its own; an older or newer export may write keys
# this version does not name, and quantize writes a null variant where fp32 had none.
JPPNET_BF16 = {"file": "jppnet.onnx", "variant": None, "precision": "bf16",
               "execution_provider": {"name": "OpenVINOExecutionProvider", "options": {"precision": "BF16"},
                                      "onnxruntime": "1.32.0"},
               "source": {"fp32": "jppnet.onnx", "sha256": "24fa4f4e", "synthetic": True, "note": "kept"},
               "agreement": {"photos": 1, "label_agreement": 1.0, "keypoints_within_5px": 1.0},
               "sha256": "24fa4f4e", "bytes": 5, "future_key": {"any": [1, "thing"]}}
REAL = {"gmm": GMM, "tom_winograd": TOM_WINOGRAD, "jppnet_winograd": JPPNET_WINOGRAD, "jppnet_int8": JPPNET_INT8,
        "jppnet_bf16": JPPNET_BF16}


@pytest.mark.parametrize("name", REAL)
def test_real_entries_round_trip_exactly_keys_in_order(name):
    entry = REAL[name]
    typed = ModelEntry.from_json(entry)
    assert typed.to_json() == entry
    assert json.dumps(typed.to_json()) == json.dumps(entry)  # the order too: a rewrite changes no line


def test_typed_fields_read_the_real_entries():
    int8 = ModelEntry.from_json(JPPNET_INT8)
    assert int8.file == "jppnet.int8.onnx" and int8.precision == "int8" and int8.variant == "full"
    assert int8.quantization["reduce_range"] is True
    assert int8.source == ModelSource(fp32="jppnet.onnx", sha256=JPPNET_INT8["source"]["sha256"], synthetic=True)
    assert isinstance(int8.agreement, Agreement) and int8.agreement.photos == 8
    assert int8.agreement.keypoints_within_3px == JPPNET_INT8["agreement"]["keypoints_within_3px"]
    assert int8.agreement.vector_extensions == ["AVX2", "AVX-512", "VNNI", "BF16"] and not int8.agreement.extra
    gmm = ModelEntry.from_json(GMM)
    assert gmm.family == "grayxu" and gmm.variant is None and gmm.bytes == 81156548 and gmm.source.synthetic
    assert ModelEntry.from_json(JPPNET_WINOGRAD).winograd_convolutions == 27
    bf16 = ModelEntry.from_json(JPPNET_BF16)
    assert bf16.extra == {"future_key": {"any": [1, "thing"]}} and bf16.source.extra == {"note": "kept"}
    assert bf16.agreement.extra == {"keypoints_within_5px": 1.0} and bf16.execution_provider["name"]


def test_a_manifest_is_written_and_read_back_as_it_was(tmp_path):
    data = {"format": 1, "models": REAL, "written_by": "a newer export"}
    (tmp_path / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    manifest = Manifest.read(tmp_path)
    assert manifest.to_json() == data and manifest.extra == {"written_by": "a newer export"}
    before = (tmp_path / "manifest.json").read_text()
    manifest.write(tmp_path)
    assert (tmp_path / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file left
    changed = manifest.with_entry("gmm", ModelEntry.from_json({**GMM, "opset": 18}))
    changed = changed.with_entry("tom", ModelEntry("t.onnx"))
    assert list(changed.models) == [*REAL, "tom"] and changed.models["gmm"].opset == 18
    assert manifest.models["gmm"].opset == 17  # with_entry makes a new manifest
    assert Manifest().to_json() == {"format": 1, "models": {}}
    assert Manifest.read(tmp_path / "none", missing_ok=True) == Manifest()
    with pytest.raises(ModelsMissingError, match="manifest.json missing"):
        Manifest.read(tmp_path / "none")


@pytest.mark.parametrize("manifest, words", [
    ([], "no \"models\" object"),
    ({"models": []}, "no \"models\" object"),
    ({"models": {"gmm": "gmm.onnx"}}, "models.gmm is a str"),
    ({"models": {"gmm": {"file": 5}}}, "models.gmm.file"),
    ({"models": {"gmm": {"file": "../../etc/passwd"}}}, "models.gmm.file"),
    ({"models": {"gmm": {"file": "gmm.onnx", "source": "synthetic"}}}, "models.gmm.source must be dict"),
    ({"models": {"gmm": {"file": "gmm.onnx", "sha256": 1}}}, "models.gmm.sha256 must be str"),
    ({"models": {"gmm": {"file": "gmm.onnx", "bytes": "12"}}}, "models.gmm.bytes must be int, got str"),
    ({"models": {"gmm": {"file": "gmm.onnx", "family": None}}}, "models.gmm.family must be str"),
    ({"models": {"j": {"file": "j.onnx", "agreement": {"photos": "8"}}}}, "models.j.agreement.photos must be int"),
    ({"models": {"j": {"file": "j.onnx", "source": {"synthetic": "yes"}}}}, "models.j.source.synthetic must be bool"),
])
def test_a_misshapen_manifest_is_refused_in_one_sentence(tmp_path, manifest, words):
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    for read in (Manifest.read, ModelDir.open):
        with pytest.raises(ModelsMissingError, match="is not a tryon manifest") as error:
            read(tmp_path)
        assert words in str(error.value) and "tryon export" in str(error.value)


def test_record_validates_what_an_exporter_passes(tiny_models_dir, tmp_path):
    shutil.copy2(tiny_models_dir / "gmm.onnx", tmp_path / "gmm.onnx")
    (tmp_path / "sub").mkdir()
    shutil.copy2(tiny_models_dir / "gmm.onnx", tmp_path / "sub" / "gmm.onnx")
    with pytest.raises(ManifestStructureError, match="models.gmm.file must be a file name"):
        export_manifest.record(tmp_path, "gmm", {"file": "sub/gmm.onnx", "family": "grayxu"})
    with pytest.raises(ManifestStructureError, match="models.gmm.opset must be int"):
        export_manifest.record(tmp_path, "gmm", {"file": "gmm.onnx", "opset": "17"})
    assert not (tmp_path / "manifest.json").exists()
    written = export_manifest.record(tmp_path, "gmm", {"file": "gmm.onnx", "family": "grayxu", "opset": 17,
                                                       "source": {"path": "gmm.pth", "synthetic": True},
                                                       "from_a_newer_exporter": 1})
    assert list(written)[:5] == ["file", "family", "opset", "source", "from_a_newer_exporter"]
    assert list(written)[5:] == ["sha256", "bytes", "inputs", "outputs", "tools", "exported_at"]
    assert written["source"]["path"] == str(Path("gmm.pth").resolve())
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"format": 1, "models": {"gmm": written}}
    models = ModelDir.open(tmp_path)
    assert models.file("gmm") == tmp_path / "gmm.onnx" and models.family == "grayxu" and models.synthetic("gmm")
    assert models.entry("gmm").extra == {"from_a_newer_exporter": 1}


# Raw reads of manifest keys; runtime/models/manifest.py is the one place that may hold them.
RAW = re.compile(r"""\[["'](file|sha256)["']\]|\.get\(["'](agreement|variant|source)["']"""
                 r"""|manifest\[["']models["']\]|\.manifest\.get\(|\.manifest\[|manifest\.load\(""")


def test_no_code_reads_the_manifest_raw():
    found = []
    for folder in ("runtime", "export", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "runtime" / "models" / "manifest.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if RAW.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "read the typed fields (runtime/models/manifest.py) instead:\n" + "\n".join(found)
