"""What every handler shares, created once per execution environment."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from botocore.config import Config

from racecheck.core.quota import MAX_WAIT_SECONDS, QuotaLimiter
from racecheck.core.settings import Settings
from racecheck.core.throughput import Throughput

logger = Logger()
tracer = Tracer()
metrics = Metrics()

THROUGHPUT_ENV_VAR = "RACECHECK_THROUGHPUT"
# Step Functions owns backoff (with jitter, inside the Express time limit) and the queue owns
# the long waits; one quick SDK retry here only smooths over a dropped connection. The read
# timeout leaves a slow Rekognition call and its one retry inside the task's time budget.
_SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2},
                     connect_timeout=3, read_timeout=6)
# Every Rekognition call takes a slot of the shared quota first (racecheck.core.quota); an
# SDK retry would be a call without one, so retries are the state machine's and the queue's.
_REKOGNITION_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1},
                             connect_timeout=3, read_timeout=6)
# StartSyncExecution answers when the run ends: up to Express's 5 minutes. No SDK retry: a
# lost answer is the queue's to retry, not a second run started while the first goes on.
_SYNC_EXECUTION_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1},
                                connect_timeout=5, read_timeout=310)

T = TypeVar("T")
_CREATING = threading.RLock()
_UNSET: Any = object()


class _CreatedOnce(Generic[T]):
    """``functools.cache`` for a factory of no argument, whose value is made once even when
    threads ask for it first at the same moment (the local runner's pollers do): boto3's
    default session must not create clients in parallel ("Session objects are not thread
    safe and should not be shared across threads", boto3 documentation, Session guide,
    "Multithreading or multiprocessing with sessions"; clients, once made, are), and an S3
    client costs about 150 ms of CPU to make.
    On Lambda one invocation at a time runs in an environment, so the lock is never held
    by another."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value = _UNSET
        functools.update_wrapper(self, factory)

    def __call__(self) -> T:
        with _CREATING:  # re-entrant: quota_limiter() asks for dynamodb() and throughput()
            if self._value is _UNSET:
                self._value = self._factory()
            return cast(T, self._value)

    def cache_clear(self) -> None:
        with _CREATING:
            self._value = _UNSET


@_CreatedOnce
def settings() -> Settings:
    return Settings.from_env()


@_CreatedOnce
def throughput() -> Throughput:
    raw = required_env(THROUGHPUT_ENV_VAR)
    try:
        return Throughput(**json.loads(raw))
    except (ValueError, TypeError) as error:
        raise RuntimeError(f"{THROUGHPUT_ENV_VAR} is invalid: {error}") from error


@_CreatedOnce
def rekognition() -> Any:
    return boto3.client("rekognition", config=_REKOGNITION_CONFIG)


@_CreatedOnce
def quota_limiter() -> QuotaLimiter | None:
    """The shared Rekognition budget; None where no quota applies (offline detectors)."""
    table = os.environ.get("QUOTA_TABLE_NAME")
    if not table:
        return None
    return QuotaLimiter(dynamodb(), table=table,
                        calls_per_second=throughput().calls_per_second,
                        max_wait_seconds=MAX_WAIT_SECONDS)


def take_rekognition_slot(api: str) -> None:
    limiter = quota_limiter()
    if limiter is not None:
        waited = limiter.acquire(api)
        if waited:
            logger.debug("waited for a Rekognition slot", extra={"api": api, "seconds": waited})


@_CreatedOnce
def s3() -> Any:
    return boto3.client("s3", config=_SDK_CONFIG)


@_CreatedOnce
def dynamodb() -> Any:
    return boto3.client("dynamodb", config=_SDK_CONFIG)


@_CreatedOnce
def sns() -> Any:
    return boto3.client("sns", config=_SDK_CONFIG)


@_CreatedOnce
def sqs() -> Any:
    return boto3.client("sqs", config=_SDK_CONFIG)


@_CreatedOnce
def stepfunctions() -> Any:
    return boto3.client("stepfunctions", config=_SYNC_EXECUTION_CONFIG)


CACHED = (settings, throughput, rekognition, quota_limiter, s3, dynamodb, sns, sqs,
          stepfunctions)


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
