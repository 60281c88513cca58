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
from PIL import Image, ImageDraw

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


def make_jpeg(
    width: int = 640, height: int = 480, *, colour: str = "#3a7bd5", quality: int = 90
) -> bytes:
    picture = Image.new("RGB", (width, height), colour)
    draw = ImageDraw.Draw(picture)
    # Some structure, so the file compresses like a photo rather than like a blank page.
    for step in range(0, width, 16):
        draw.line([(step, 0), (width - step, height)], fill=(step % 255, 90, 160), width=3)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


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
