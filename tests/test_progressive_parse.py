"""TryOn.parse(preview=True) (issue 21): a quick parse under the exact parse's id, which the exact
parse replaces, and which never stands in for it."""
import io
import json

import numpy as np
import pytest
from test_parse_dress import CountingSession
from tryon.errors import InputError
from tryon.parsed_person import ParsedPerson, StoredPersonError
from tryon.pipeline import PREVIEW_SIDE, TryOn
from tryon.store import MemoryStore

ARRAYS = ("person", "labels", "keypoints")


def same_person(a: ParsedPerson, b: ParsedPerson) -> bool:
    """Every byte of what dress reads and what is stored, but the zip timestamps of to_bytes."""
    return all(getattr(a, name).tobytes() == getattr(b, name).tobytes() for name in ARRAYS) and \
        (a.id, a.confidence, a.reason, a.options, a.quality) == (b.id, b.confidence, b.reason, b.options, b.quality)


@pytest.fixture()
def stored(tiny_tryon):
    """The default pipeline (three scales and the mirror) behind a fresh store, its JPP-Net counted."""
    counted = CountingSession(tiny_tryon.parse_stage.session)
    tryon = TryOn.from_dir(tiny_tryon.models.path, provider="cpu", store=MemoryStore())
    tryon.parse_stage.session = counted
    return tryon, counted


def test_preview_then_exact_is_byte_for_byte_the_non_progressive_parse(stored, tiny_tryon, viton_pair):
    tryon, counted = stored
    photo = viton_pair[0]
    preview = tryon.parse(photo, preview=True)
    assert preview.quality == "preview"
    assert tryon.store.get(preview.id).quality == "preview"  # stored under the exact parse's id
    call = tryon.parse_call(photo)  # the exact parse: the stored preview does not stand in for it
    exact = call.parsed
    assert not call.from_store and exact.quality == "full" and exact.id == preview.id
    assert same_person(exact, tiny_tryon.parse(photo))  # a pipeline that never made a preview
    assert same_person(tryon.store.get(exact.id), exact)  # the exact parse replaced the preview
    runs = counted.runs
    again = tryon.parse_call(photo, preview=True)  # the exact one is better than a new preview
    assert again.from_store and again.parsed.quality == "full" and counted.runs == runs


def test_a_preview_is_one_small_square_without_the_mirror(stored, viton_pair):
    tryon, counted = stored
    preview = tryon.parse_call(viton_pair[0], preview=True)
    assert tryon.preview_stage().sides == (PREVIEW_SIDE,) and not tryon.preview_stage().mirror
    assert [name for name in preview.timings_ms if "jppnet_" in name] == [f"parse.jppnet_{PREVIEW_SIDE}"]
    assert counted.runs == 1  # one run, of the exact graph (the tiny models have no int8 one), in a stage of its own
    assert tryon.parse_stage.sides == (384, 288, 480) and tryon.parse_stage.mirror
    assert not np.array_equal(preview.parsed.labels, tryon.parse(viton_pair[0]).labels)


def test_a_preview_found_in_the_store_is_a_preview_call(stored, viton_pair):
    tryon, _ = stored
    first = tryon.parse(viton_pair[0], preview=True)
    again = tryon.parse_call(viton_pair[0], preview=True)
    assert again.from_store and same_person(again.parsed, first)


def test_given_labels_make_a_full_parse_even_for_a_preview(stored):
    tryon, counted = stored
    photo = np.full((256, 192, 3), 128, np.uint8)
    labels, keypoints = np.zeros((256, 192), np.uint8), np.tile([[96, 128]], (16, 1))
    parsed = tryon.parse(photo, labels=labels, keypoints=keypoints, preview=True)
    assert parsed.quality == "full" and counted.runs == 0


def test_a_dress_only_pipeline_makes_no_preview(tiny_models_dir, viton_pair):
    dress_only = TryOn.from_dir(tiny_models_dir, provider="cpu", load_jppnet=False)
    with pytest.raises(InputError, match="dress only"):
        dress_only.parse(viton_pair[0], preview=True)


def test_the_quality_travels_in_the_stored_form_and_version_1_reads_as_missing(stored, viton_pair):
    tryon, _ = stored
    preview = tryon.parse(viton_pair[0], preview=True)
    back = ParsedPerson.from_bytes(preview.to_bytes())
    assert same_person(back, preview) and back.quality == "preview"
    with np.load(io.BytesIO(preview.to_bytes())) as arrays:  # as a version without `quality` wrote it
        meta = json.loads(arrays["meta"].tobytes())
        old = {name: arrays[name] for name in ARRAYS}
    meta["format"] = 1
    del meta["quality"]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **old, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(StoredPersonError, match="format 1"):
        ParsedPerson.from_bytes(buffer.getvalue())
