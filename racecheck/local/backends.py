"""Who answers Rekognition calls in a local run: the offline detectors or the real service."""

from __future__ import annotations

import io
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from racecheck.local.rekognition import RekognitionBackend, RekognitionError

DETECTORS = ("local", "rekognition")
# Rekognition takes at most 5 MB as raw bytes (15 MB only from S3).
REKOGNITION_MAX_IMAGE_BYTES = 5 * 1024 * 1024


class BackendUnavailable(RuntimeError):
    """The chosen detector cannot run here; the message says what is missing."""


def ensure_decodable(image: bytes) -> None:
    """Rekognition refuses images it cannot decode; so do the local detectors."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image)) as opened:
            if opened.format not in ("JPEG", "PNG"):
                raise RekognitionError("InvalidImageFormatException",
                                       "Request has unsupported image format")
            opened.load()
    except RekognitionError:
        raise
    except Exception as error:
        raise RekognitionError("InvalidImageFormatException",
                               f"Request has invalid image format ({error})") from error


_worker_detector: Any = None
# With one job, several executions share this process: load the models once, not per thread.
_detector_lock = threading.Lock()


def _detector() -> Any:
    global _worker_detector
    with _detector_lock:
        if _worker_detector is None:
            from racecheck.detectors.local import LocalRekognition

            _worker_detector = LocalRekognition()
        return _worker_detector


def detect_locally(operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """Runs in a worker process (or in-process with one job): one Rekognition call."""
    ensure_decodable(image)
    detector = _detector()
    if operation == "DetectText":
        return dict(detector.detect_text(image))
    if operation == "DetectFaces":
        return dict(detector.detect_faces(image, list(params.get("Attributes", ["DEFAULT"]))))
    if operation == "DetectModerationLabels":
        return dict(detector.detect_moderation_labels(image,
                                                      float(params.get("MinConfidence", 50))))
    raise RekognitionError("InvalidParameterException", f"{operation} is not emulated locally")


def _warm_up() -> None:
    # Ctrl-C is the runner's to handle: it keeps the finished photos and shuts workers down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One ONNX thread per worker: the workers share the cores between them.
    os.environ["RACECHECK_DETECTOR_THREADS"] = "1"
    _detector()


class LocalDetectorBackend:
    """Offline detectors, across ``jobs`` worker processes (in-process when jobs is 1)."""

    def __init__(self, *, jobs: int = 1) -> None:
        try:
            import racecheck.detectors.local  # noqa: F401
        except ImportError as error:
            raise BackendUnavailable(
                f"the offline detectors are not installed ({error}); run `make setup`"
            ) from error
        self.jobs = max(1, jobs)
        self._pool = (ProcessPoolExecutor(max_workers=self.jobs, initializer=_warm_up)
                      if self.jobs > 1 else None)

    def __call__(self, operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
        if self._pool is None:
            return detect_locally(operation, image, params)
        return self._pool.submit(detect_locally, operation, image, params).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _shrink_for_bytes_api(image: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        picture = opened.convert("RGB")
    quality = 90
    while True:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= REKOGNITION_MAX_IMAGE_BYTES or quality <= 50:
            return buffer.getvalue()
        quality -= 10
        picture = picture.resize((picture.width * 4 // 5, picture.height * 4 // 5))


class RealRekognitionBackend:
    """The real Rekognition API, with the user's own credentials and region.

    The client is built before moto starts, from the credentials the environment really
    has, so the emulated environment's fake keys never reach AWS.
    """

    def __init__(self, *, client_factory: Callable[[], Any] | None = None) -> None:
        import boto3

        if client_factory is not None:
            self._client = client_factory()
            return
        session = boto3.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise BackendUnavailable(
                "--detector rekognition needs AWS credentials (AWS_PROFILE or the usual "
                "environment variables); use --detector local to stay offline")
        region = session.region_name or os.environ.get("AWS_REGION")
        if not region:
            raise BackendUnavailable("--detector rekognition needs a region (AWS_REGION)")
        frozen = credentials.get_frozen_credentials()
        self._client = boto3.client(
            "rekognition", region_name=region, aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key, aws_session_token=frozen.token)

    def __call__(self, operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
        if len(image) > REKOGNITION_MAX_IMAGE_BYTES:
            image = _shrink_for_bytes_api(image)
        request = {key: value for key, value in params.items() if key != "Image"}
        method = {"DetectText": self._client.detect_text,
                  "DetectFaces": self._client.detect_faces,
                  "DetectModerationLabels": self._client.detect_moderation_labels}[operation]
        try:
            response: dict[str, Any] = method(Image={"Bytes": image}, **request)
        except Exception as error:
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            if code:
                raise RekognitionError(code, str(error)) from error
            raise
        response.pop("ResponseMetadata", None)
        return response

    def close(self) -> None:
        return None


def make_backend(detector: str, *, jobs: int) -> RekognitionBackend:
    if detector == "local":
        return LocalDetectorBackend(jobs=jobs)
    if detector == "rekognition":
        return RealRekognitionBackend()
    raise BackendUnavailable(f"unknown detector {detector!r}; choose one of {DETECTORS}")
