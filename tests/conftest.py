"""Fixtures shared by the whole suite: paths, settings, canned API responses, images."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from PIL import ExifTags, Image, ImageDraw

from racecheck.core.settings import Settings

# Powertools reads these when the handlers' modules are imported, before any fixture runs.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "racecheck")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Racecheck")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = REPOSITORY_ROOT.parent / "shared"
RBNR = SHARED / "datasets" / "rbnr"


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools reads."""

    function_name: str = "racecheck-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:racecheck-test"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def stubbed(service: str) -> tuple[Any, Stubber]:
    """A client of `service` with fake credentials and a Stubber validating every call."""
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    return client, Stubber(client)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_cdk_json()


def load_fixture(relative: str) -> dict[str, Any]:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


@pytest.fixture
def rekognition_fixture() -> Callable[[str], dict[str, Any]]:
    """A canned Rekognition response from tests/fixtures/rekognition/<name>.json."""
    return lambda name: load_fixture(f"rekognition/{name}.json")


def no_bib_rekognition(operation: str, image: bytes, params: dict[str, Any]
                       ) -> dict[str, Any]:
    """A local-run backend that finds no text and no face: every photo passes, NO_BIB."""
    name = {"DetectText": "detect_text_nothing", "DetectFaces": "detect_faces_none",
            "DetectModerationLabels": "detect_moderation_clean"}[operation]
    return load_fixture(f"rekognition/{name}.json")


def camera_exif(date_time_original: str, *, sub_seconds: str | None = None,
                offset: str | None = None) -> Image.Exif:
    """EXIF as a camera writes it: ``DateTimeOriginal`` like ``2026:04:19 10:15:00``."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "racecheck test camera"
    capture = exif.get_ifd(ExifTags.IFD.Exif)
    capture[ExifTags.Base.DateTimeOriginal] = date_time_original
    if sub_seconds is not None:
        capture[ExifTags.Base.SubsecTimeOriginal] = sub_seconds
    if offset is not None:
        capture[ExifTags.Base.OffsetTimeOriginal] = offset
    return exif


def make_jpeg(
    width: int = 640, height: int = 480, *, colour: str = "#3a7bd5", quality: int = 90,
    exif: Image.Exif | None = None,
) -> bytes:
    picture = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(picture)
    # Some structure, so the file compresses like a photo rather than like a blank page.
    for step in range(0, width, 16):
        draw.line([(step, 0), (width - step, height)], fill=(step % 255, 90, 160), width=3)
    buffer = io.BytesIO()
    if exif is not None:
        picture.save(buffer, format="JPEG", quality=quality, exif=exif)
    else:
        picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_jpegs(folder: Path, count: int) -> Path:
    """FOLDER with COUNT distinct photos named 0.jpg, 1.jpg, ..."""
    folder.mkdir()
    for index in range(count):
        (folder / f"{index}.jpg").write_bytes(make_jpeg(colour=f"#{index}{index}3366"))
    return folder


@pytest.fixture
def jpeg() -> Callable[..., bytes]:
    return make_jpeg


@pytest.fixture
def rbnr() -> Path:
    if not RBNR.is_dir():
        pytest.skip(f"shared RBNR dataset not found at {RBNR} (clone with ../shared beside it)")
    return RBNR


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits are real sleeps in moto's interpreter; record them instead of waiting.

    This reaches into moto: if an upgrade moves the retrier, this fixture fails loudly.
    """
    sleeps: list[float] = []

    class _Clock:
        @staticmethod
        def sleep(seconds: float) -> None:
            sleeps.append(seconds)

    assert hasattr(retrier_decl, "time"), "moto's retrier no longer sleeps via time.sleep"
    monkeypatch.setattr(retrier_decl, "time", _Clock)
    return sleeps
