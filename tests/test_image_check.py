"""The header check, as a pure function over the first bytes of a file."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from racecheck.core.image_check import HeaderIncomplete, inspect_header
from racecheck.core.settings import Settings
from tests.conftest import make_jpeg


def encoded(image_format: str, size: tuple[int, int] = (800, 600)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_jpeg_and_png_of_a_fair_size_are_accepted(settings: Settings, image_format: str) -> None:
    data = encoded(image_format)
    check = inspect_header(data, size_bytes=len(data), settings=settings)
    assert check.accepted and check.reasons == []
    assert (check.format, check.width, check.height) == (image_format, 800, 600)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "EMPTY_FILE"),
    (b"bib,gender\n3631,M\n", "NOT_AN_IMAGE"),
    (b"\xff\xd8\xff\xe0\x00\x10garbage-after-the-signature" * 3, "CORRUPT_IMAGE"),
])
def test_files_that_are_not_usable_images_are_rejected(settings: Settings, data: bytes,
                                                       reason: str) -> None:
    check = inspect_header(data, size_bytes=len(data), settings=settings)
    assert not check.accepted
    assert check.reasons == [reason]
    assert check.detail


@pytest.mark.parametrize("image_format", ["GIF", "WEBP", "BMP", "TIFF"])
def test_formats_rekognition_cannot_read_are_rejected(settings: Settings,
                                                      image_format: str) -> None:
    data = encoded(image_format)
    check = inspect_header(data, size_bytes=len(data), settings=settings)
    assert check.reasons == ["UNSUPPORTED_FORMAT"]
    assert check.format == image_format


def test_a_small_image_is_rejected_with_the_threshold_in_the_detail(settings: Settings) -> None:
    data = make_jpeg(300, 200)
    check = inspect_header(data, size_bytes=len(data), settings=settings)
    assert check.reasons == ["IMAGE_TOO_SMALL"]
    assert str(settings.min_image_side_px) in check.detail


def test_a_prefix_that_ends_inside_the_header_asks_for_more(settings: Settings) -> None:
    data = make_jpeg()
    with pytest.raises(HeaderIncomplete):
        inspect_header(data[:10], size_bytes=len(data), settings=settings)


def test_a_whole_file_that_ends_inside_its_header_is_corrupt(settings: Settings) -> None:
    data = make_jpeg()[:10]
    check = inspect_header(data, size_bytes=len(data), settings=settings)
    assert check.reasons == ["CORRUPT_IMAGE"]
