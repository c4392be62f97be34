"""The seed /cloth body's field checks, without a server: what each refusal says."""
import base64
import json

import pytest

pytest.importorskip("fastapi")
from fastapi import HTTPException  # noqa: E402
from tryon.serve.seed_route import parse_body  # noqa: E402

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()


def _refusal(body: dict) -> str:
    with pytest.raises(HTTPException) as refused:
        parse_body(json.dumps(body).encode())
    assert refused.value.status_code == 422
    return refused.value.detail


def test_null_says_null_and_what_is_accepted():
    detail = _refusal({"image_person": None, "image_cloth": PNG})
    assert "image_person is null" in detail and "missing" not in detail
    assert "base64 string" in detail and "JPEG, PNG, BMP or WebP" in detail


def test_absent_key_says_missing():
    detail = _refusal({"image_cloth": PNG})
    assert "image_person is missing" in detail and "null" not in detail


def test_both_present_decode():
    assert parse_body(json.dumps({"image_person": PNG, "image_cloth": PNG}).encode()) == (b"\x89PNG\r\n\x1a\n",) * 2
