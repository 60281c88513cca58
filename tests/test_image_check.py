"""The header check, as a pure function over the first bytes of a file."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from racecheck.core.image_check import HeaderIncomplete, inspect_header
from racecheck.core.settings import Settings
from tests.conftest import camera_exif, make_jpeg


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


# ------------------------------------------------------------------------------ capture time


def test_the_capture_time_comes_from_exif_in_the_header_bytes(settings: Settings) -> None:
    # given a 2 MB camera JPEG with DateTimeOriginal, SubSecTimeOriginal and its UTC offset
    photo = make_jpeg(1600, 1200, exif=camera_exif("2026:04:19 10:15:02", sub_seconds="45",
                                                   offset="+02:00")) + b"\x00" * 2_000_000
    # when only its first 64 KiB are inspected, as CheckImage reads them
    check = inspect_header(photo[:65536], size_bytes=len(photo), settings=settings)
    # then the time is there, to the hundredth, with the camera's offset
    assert check.accepted
    assert check.taken_at == "2026-04-19T10:15:02.450+02:00"


def test_a_camera_without_offset_or_subseconds_gives_local_whole_seconds(
        settings: Settings) -> None:
    photo = make_jpeg(800, 600, exif=camera_exif("2026:04:19 10:15:02"))
    check = inspect_header(photo, size_bytes=len(photo), settings=settings)
    assert check.taken_at == "2026-04-19T10:15:02"


@pytest.mark.parametrize("written", ["0000:00:00 00:00:00", "    :  :     :  :  ",
                                     "2026:13:45 10:15:02", "yesterday"])
def test_a_blank_or_broken_capture_time_is_no_time_and_no_rejection(
        settings: Settings, written: str) -> None:
    photo = make_jpeg(800, 600, exif=camera_exif(written))
    check = inspect_header(photo, size_bytes=len(photo), settings=settings)
    assert check.accepted
    assert check.taken_at is None


def test_a_photo_without_exif_has_no_capture_time(settings: Settings) -> None:
    photo = make_jpeg(800, 600)
    assert inspect_header(photo, size_bytes=len(photo), settings=settings).taken_at is None


def test_garbage_in_the_exif_segment_does_not_cost_the_verdict(settings: Settings) -> None:
    # given an APP1 "Exif" segment whose TIFF structure is nonsense
    plain = make_jpeg(800, 600)
    junk = b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff" + b"\x13" * 64
    photo = plain[:2] + b"\xff\xe1" + (len(junk) + 2).to_bytes(2, "big") + junk + plain[2:]
    check = inspect_header(photo, size_bytes=len(photo), settings=settings)
    assert check.accepted and check.taken_at is None
