"""SearchRequest validation: every bad input is rejected with an error naming its field."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from serving.schemas import (
    MAX_BATCH,
    MAX_IMAGE_BYTES,
    Hit,
    SearchRequest,
    SearchResponse,
    format_validation_errors,
)


def _error(body: dict) -> str:
    with pytest.raises(ValidationError) as info:
        SearchRequest.model_validate(body)
    return format_validation_errors(info.value.errors())


def test_valid_requests() -> None:
    img = base64.b64encode(b"\x89PNG fake").decode()
    r = SearchRequest.model_validate({"images": [img], "k": 3})
    assert r.kind == "images" and r.image_bytes() == [b"\x89PNG fake"] and r.nprobe is None
    r = SearchRequest.model_validate({"codes": ["00ff", "a1b2"], "nprobe": 4})
    assert r.kind == "codes" and r.n_queries == 2 and r.k == 10
    r = SearchRequest.model_validate({"ids": [0, 5]})
    assert r.kind == "ids" and r.ids == [0, 5]


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"ids": [1], "colour": "red"}, "colour", "Extra inputs"),
        ({"images": ["not base64!!"]}, "images[0]", "invalid base64"),
        ({"images": [base64.b64encode(b"x").decode(), "%%%"]}, "images[1]", "invalid base64"),
        ({"images": [""]}, "images[0]", "empty"),
        ({"codes": ["0g"]}, "codes[0]", "character 1 ('g') is not hexadecimal"),
        ({"codes": ["ab cd"]}, "codes[0]", "is not hexadecimal"),
        ({"codes": ["abc"]}, "codes[0]", "odd length 3"),
        ({"ids": [3, -1]}, "ids[1]", "greater than or equal to 0"),
        ({"ids": ["7"]}, "ids[0]", "integer"),
        ({"ids": [1], "k": 0}, "k", "greater than or equal to 1"),
        ({"ids": [1], "k": 1001}, "k", "less than or equal to 1000"),
        ({"ids": [1], "nprobe": 0}, "nprobe", "greater than or equal to 1"),
        ({"ids": []}, "ids", "at least 1"),
        ({"ids": list(range(MAX_BATCH + 1))}, "ids", f"at most {MAX_BATCH}"),
        ({"ids": [1], "codes": ["00"]}, "body", "exactly one of"),
        ({}, "body", "exactly one of"),
    ],
)
def test_bad_requests_name_the_field(body: dict, field: str, text: str) -> None:
    message = _error(body)
    assert message.startswith(f"{field}: "), message
    assert text in message, message


def test_oversized_image_is_rejected() -> None:
    big = base64.b64encode(b"\0" * (MAX_IMAGE_BYTES + 1)).decode()
    message = _error({"images": [big]})
    assert message.startswith("images[0]: ") and "larger than" in message


def test_response_round_trip() -> None:
    resp = SearchResponse(
        results=[[Hit(id=1, distance=0, key="a", label=[2])]], n_bits=32, generation=1
    )
    again = SearchResponse.model_validate_json(resp.model_dump_json())
    assert again == resp and again.partial is False and again.missing_groups == []
    with pytest.raises(ValidationError):
        Hit.model_validate({"id": 1, "distance": 0, "extra": 1})


def test_image_size_limit_is_the_shared_policy() -> None:
    from odh_core.images import DEFAULT_IMAGE_LIMITS

    assert DEFAULT_IMAGE_LIMITS.max_bytes == MAX_IMAGE_BYTES  # what training and encode accept
