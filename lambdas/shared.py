"""What every handler shares, created once per execution environment."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from botocore.config import Config

from racecheck.core.settings import Settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# Step Functions owns backoff (with jitter, inside the Express time limit); one quick SDK
# retry here only smooths over a dropped connection.
_SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2},
                     connect_timeout=5, read_timeout=30)


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def rekognition() -> Any:
    return boto3.client("rekognition", config=_SDK_CONFIG)


@functools.cache
def s3() -> Any:
    return boto3.client("s3", config=_SDK_CONFIG)


@functools.cache
def dynamodb() -> Any:
    return boto3.client("dynamodb", config=_SDK_CONFIG)


@functools.cache
def sns() -> Any:
    return boto3.client("sns", config=_SDK_CONFIG)


def required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set")
    return value


def rekognition_rejection(error: Exception) -> str | None:
    """Rekognition's word that the image itself is unusable becomes a reason code."""
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return {
        "InvalidImageFormatException": "CORRUPT_IMAGE",
        "ImageTooLargeException": "IMAGE_TOO_LARGE",
    }.get(code or "")
