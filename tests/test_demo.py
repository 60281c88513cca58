"""`racecheck demo`'s photo set: built offline from photos that ship inside pinned packages."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from racecheck import demo
from racecheck.core.registry import parse_runners_csv
from racecheck.demo import DemoSet, build_demo_set

SAMPLE_PACKAGES_PRESENT = all(
    importlib.util.find_spec(package) is not None for package in ("skimage", "matplotlib")
)
needs_samples = pytest.mark.skipif(
    not SAMPLE_PACKAGES_PRESENT,
    reason="scikit-image and matplotlib (which ship the sample photos) are not installed",
)


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> DemoSet:
    if not SAMPLE_PACKAGES_PRESENT:
        pytest.skip("scikit-image and matplotlib (which ship the sample photos) are not installed")
    # given no network at all: any connection attempt fails the build
    patch = pytest.MonkeyPatch()

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the demo set must be built without network access")

    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket, "create_connection", refuse)
    try:
        # when the demo set is built
        return build_demo_set(tmp_path_factory.mktemp("demo"))
    finally:
        patch.undo()


def by_key(demo_set: DemoSet) -> dict[str, demo.DemoPhoto]:
    return {photo.key: photo for photo in demo_set.photos}


@needs_samples
def test_given_the_demo_set_then_every_promised_file_exists_and_nothing_else(
    demo_set: DemoSet,
) -> None:
    on_disk = sorted(
        str(path.relative_to(demo_set.photos_dir))
        for path in demo_set.photos_dir.rglob("*")
        if path.is_file()
    )
    assert on_disk == sorted(by_key(demo_set))
    assert demo_set.runners_csv.is_file()
    assert (demo_set.root / demo.ABOUT_NAME).read_text(encoding="utf-8").strip() == (
        demo_set.description
    )


@needs_samples
def test_given_the_demo_set_then_it_holds_each_kind_of_input(demo_set: DemoSet) -> None:
    photos = by_key(demo_set)
    meant = [verdicts for photo in demo_set.photos for verdicts in photo.meant_verdicts]
    for verdict in ("PASS", "FAIL", "REVIEW", "REJECTED"):
        assert verdict in meant

    # a real photo per bib, large enough to look like a camera's
    readable = []
    for key, photo in photos.items():
        path = demo_set.photos_dir / key
        try:
            with Image.open(path) as image:
                image.load()
                readable.append(key)
                assert max(image.size) >= 800
        except OSError:
            continue
        assert photo.meant_verdicts != ("REJECTED",)
    assert len(readable) == 6

    # a truncated JPEG: it opens as a JPEG but its pixels cannot be read
    truncated = demo_set.photos_dir / "05 truncated upload.jpg"
    with Image.open(truncated) as image:
        assert image.format == "JPEG"
        with pytest.raises(OSError, match="truncated"):
            image.load()
    # a file that is not an image at all
    with pytest.raises(Image.UnidentifiedImageError):
        Image.open(demo_set.photos_dir / "notes.txt")
    # an odd file name: folder, spaces, non-ASCII and '+'
    odd = [key for key in photos if "+" in key and " " in key and not key.isascii()]
    assert len(odd) == 1 and "/" in odd[0]


@needs_samples
def test_given_the_runners_csv_then_the_real_parser_reads_it_with_one_deliberate_swap(
    demo_set: DemoSet,
) -> None:
    runners = {
        runner.bib: runner
        for runner in parse_runners_csv(demo_set.runners_csv.read_text(encoding="utf-8"))
    }
    photos = by_key(demo_set)
    registered_runner = runners[photos["01 registered runner.jpg"].bib or ""]
    swapped_runner = runners[photos["02 bib swap.jpg"].bib or ""]
    # the same person (one sample photo, mirrored) wears both bibs, registered to runners of
    # different genders and non-overlapping age categories: one of them is not hers
    assert (registered_runner.gender, registered_runner.age_min, registered_runner.age_max) == (
        "F",
        30,
        39,
    )
    assert swapped_runner.gender == "M"
    assert swapped_runner.age_min > (registered_runner.age_max or 0) + 10
    # the unregistered bib is not in the list; every other photographed bib is
    assert demo.UNREGISTERED_BIB not in runners
    photographed = {photo.bib for photo in demo_set.photos if photo.bib}
    assert photographed - set(runners) == {demo.UNREGISTERED_BIB}


@needs_samples
def test_given_the_demo_set_then_its_description_says_the_photos_are_package_samples(
    demo_set: DemoSet,
) -> None:
    text = demo_set.description
    assert "sample photographs shipped inside pinned Python packages" in text
    assert "bibs rendered onto them" in text
    for photo in demo_set.photos:
        assert photo.key in text


@needs_samples
def test_given_two_builds_then_the_photos_are_byte_identical(
    demo_set: DemoSet, tmp_path: Path
) -> None:
    again = build_demo_set(tmp_path)
    for photo in demo_set.photos:
        assert (again.photos_dir / photo.key).read_bytes() == (
            demo_set.photos_dir / photo.key
        ).read_bytes()


def test_given_a_missing_sample_package_when_building_then_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="'skimage' package"):
        build_demo_set(tmp_path)


def test_given_a_number_when_rendering_a_bib_then_it_is_a_white_card_with_dark_digits() -> None:
    bib = demo.render_bib("4105", 300, (200, 32, 45))
    assert bib.mode == "RGBA"
    assert bib.size == (300, 216)
    # the number area holds dark ink on near-white paper
    number_area = bib.convert("L").crop((30, 60, 270, 170))
    histogram = number_area.histogram()
    dark = sum(histogram[:60])
    light = sum(histogram[230:])
    assert dark > 0.12 * number_area.width * number_area.height
    assert light > 0.4 * number_area.width * number_area.height


RAPIDOCR_PRESENT = importlib.util.find_spec("rapidocr_onnxruntime") is not None


@needs_samples
@pytest.mark.skipif(not RAPIDOCR_PRESENT, reason="rapidocr-onnxruntime (offline OCR) absent")
def test_given_the_bib_photos_when_read_by_the_offline_ocr_then_each_number_is_found_in_its_box(
    demo_set: DemoSet,
) -> None:
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR()
    for photo in demo_set.photos:
        if photo.bib is None or photo.bib_box is None:
            continue
        path = demo_set.photos_dir / photo.key
        with Image.open(path) as image:
            width, height = image.size
        results, _ = ocr(path.read_bytes())
        found = [(corners, text, float(score)) for corners, text, score in results or []]
        matches = [item for item in found if item[1] == photo.bib]
        assert matches, f"{photo.key}: OCR read {[item[1] for item in found]}"
        corners, _, score = matches[0]
        assert score > 0.9
        centre_x = sum(point[0] for point in corners) / 4 / width
        centre_y = sum(point[1] for point in corners) / 4 / height
        box = photo.bib_box
        assert box["Left"] < centre_x < box["Left"] + box["Width"], photo.key
        assert box["Top"] < centre_y < box["Top"] + box["Height"], photo.key
