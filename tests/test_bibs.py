"""extract_bibs on DetectText responses shaped like the real API's."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.validate import validate_parameters

from racecheck.core.bibs import (
    AT_FRAME_EDGE,
    BOX_WIDER_THAN_DIGITS,
    IN_TEXT_LINE,
    LEADING_ZERO,
    LOW_CONFIDENCE,
    OUT_OF_RANGE,
    STOP_WORD,
    TOO_SMALL,
    WRONG_LENGTH,
    extract_bibs,
)
from racecheck.core.settings import Settings


def _detection(text: str, kind: str, ident: int, *, confidence: float = 99.0,
               height: float = 0.05, left: float = 0.4, parent: int | None = None,
               width: float | None = None) -> dict[str, Any]:
    # By default as wide as its characters (about 0.6 of their height each, on a square
    # photo), like Rekognition's boxes.
    width = width if width is not None else round(0.6 * height * len(text), 4)
    box = {"Width": width, "Height": height, "Left": left, "Top": 0.5}
    detection: dict[str, Any] = {
        "DetectedText": text, "Type": kind, "Id": ident, "Confidence": confidence,
        "Geometry": {"BoundingBox": box, "Polygon": [
            {"X": left, "Y": 0.5}, {"X": left + width, "Y": 0.5},
            {"X": left + width, "Y": 0.5 + height}, {"X": left, "Y": 0.5 + height}]},
    }
    if parent is not None:
        detection["ParentId"] = parent
    return detection


def _response(*detections: dict[str, Any]) -> dict[str, Any]:
    response = {"TextDetections": list(detections), "TextModelVersion": "3.0"}
    model = botocore.session.get_session().create_client(
        "rekognition", region_name="us-east-1").meta.service_model
    validate_parameters(response, model.operation_model("DetectText").output_shape)
    return response


def test_given_a_real_style_response_when_extracting_then_only_the_number_is_a_bib(
        settings: Settings) -> None:
    # Given: a LINE "#3631 MARATHON" with its WORDs and a year on a banner
    response = _response(
        _detection("#3631 MARATHON", "LINE", 0),
        _detection("2026", "LINE", 1, left=0.1, height=0.02),
        _detection("#3631", "WORD", 2, parent=0),
        _detection("MARATHON", "WORD", 3, parent=0),
        _detection("2026", "WORD", 4, parent=1, left=0.1, height=0.02),
    )
    # When
    reading = extract_bibs(response, settings)
    # Then: 3631 once (LINE and WORD deduplicated), 2026 too (no stop words by default)
    assert sorted(bib["number"] for bib in reading.bibs) == ["2026", "3631"]
    bib = next(bib for bib in reading.bibs if bib["number"] == "3631")
    assert bib["box"] == {"Left": 0.4, "Top": 0.5, "Width": 0.15, "Height": 0.05}
    assert reading.near_misses == []


def test_given_a_stop_word_when_extracting_then_it_is_a_near_miss(settings: Settings) -> None:
    tuned = Settings.from_mapping({**settings.to_dict(), "bib_stop_words": ["2026"]})
    reading = extract_bibs(_response(_detection("2026", "WORD", 0, parent=None)), tuned)
    assert reading.bibs == []
    assert [(miss["number"], miss["why"]) for miss in reading.near_misses] == [
        ("2026", STOP_WORD)]


@pytest.mark.parametrize(("text", "confidence", "height", "overrides", "why"), [
    ("3631", 40.0, 0.05, {}, LOW_CONFIDENCE),
    ("3631", 99.0, 0.001, {}, TOO_SMALL),
    ("1234567", 99.0, 0.05, {}, WRONG_LENGTH),
    ("9999", 99.0, 0.05, {"bib_max_value": 5000}, OUT_OF_RANGE),
])
def test_given_a_read_breaking_one_rule_when_extracting_then_the_rule_is_named(
        settings: Settings, text: str, confidence: float, height: float,
        overrides: dict[str, Any], why: str) -> None:
    tuned = Settings.from_mapping({**settings.to_dict(), **overrides})
    reading = extract_bibs(
        _response(_detection(text, "LINE", 0, confidence=confidence, height=height)), tuned)
    assert reading.bibs == []
    assert [miss["why"] for miss in reading.near_misses] == [why]


def test_given_words_and_single_digits_when_extracting_then_they_are_ignored(
        settings: Settings) -> None:
    reading = extract_bibs(_response(
        _detection("FINISH", "LINE", 0), _detection("7", "LINE", 1),
        _detection("14:22", "LINE", 2), _detection("2.13.3", "LINE", 3)), settings)
    assert reading.bibs == [] and reading.near_misses == []


def test_given_a_passing_and_a_failing_read_of_one_number_at_one_place_then_the_bib_wins(
        settings: Settings) -> None:
    reading = extract_bibs(_response(
        _detection("3631", "LINE", 0, confidence=50.0),
        _detection("3631", "LINE", 1, confidence=95.0, left=0.42)), settings)
    assert [(bib["number"], bib["confidence"]) for bib in reading.bibs] == [("3631", 95.0)]
    assert reading.near_misses == []


def test_given_one_number_at_two_places_when_extracting_then_both_reads_are_kept(
        settings: Settings) -> None:
    # Given: two runners wearing 3631 (a copied bib), read apart on the photo
    reading = extract_bibs(_response(
        _detection("3631", "LINE", 0, left=0.1),
        _detection("3631", "LINE", 1, left=0.6),
        _detection("3631", "WORD", 2, parent=0, left=0.1),
        _detection("3631", "WORD", 3, parent=1, left=0.6)), settings)
    # Then: one read per place, so that the rules can see the number twice
    assert sorted(bib["box"]["Left"] for bib in reading.bibs) == [0.1, 0.6]


def test_given_an_empty_response_then_nothing_is_read(settings: Settings) -> None:
    reading = extract_bibs(_response(), settings)
    assert reading.bibs == [] and reading.near_misses == []


def test_given_a_year_in_a_text_line_when_extracting_then_it_is_a_near_miss_not_a_bib(
        settings: Settings) -> None:
    # Given: the bib's number on its own LINE and "MARATHON 2026" below it, with WORDs
    response = _response(
        _detection("3631", "LINE", 0),
        _detection("MARATHON 2026", "LINE", 1, left=0.1, height=0.03),
        _detection("3631", "WORD", 2, parent=0),
        _detection("MARATHON", "WORD", 3, parent=1, left=0.1, height=0.03),
        _detection("2026", "WORD", 4, parent=1, left=0.2, height=0.03),
    )
    # When
    reading = extract_bibs(response, settings)
    # Then
    assert [bib["number"] for bib in reading.bibs] == ["3631"]
    assert [(miss["number"], miss["why"]) for miss in reading.near_misses] == [
        ("2026", IN_TEXT_LINE)]


def test_given_a_distance_line_when_extracting_then_its_number_is_in_a_text_line(
        settings: Settings) -> None:
    # Given: "10 KM" read as a LINE with two WORDs
    reading = extract_bibs(_response(
        _detection("10 KM", "LINE", 0),
        _detection("10", "WORD", 1, parent=0),
        _detection("KM", "WORD", 2, parent=0)), settings)
    # Then
    assert reading.bibs == []
    assert [miss["why"] for miss in reading.near_misses] == [IN_TEXT_LINE]


def test_given_a_line_of_numbers_only_when_extracting_then_its_words_stay_candidates(
        settings: Settings) -> None:
    # Given: two bibs side by side read as one LINE "3631 3632"
    reading = extract_bibs(_response(
        _detection("3631 3632", "LINE", 0),
        _detection("3631", "WORD", 1, parent=0),
        _detection("3632", "WORD", 2, parent=0, left=0.5)), settings)
    # Then
    assert sorted(bib["number"] for bib in reading.bibs) == ["3631", "3632"]


def test_given_a_number_in_a_text_line_and_alone_elsewhere_then_the_lone_read_is_a_bib(
        settings: Settings) -> None:
    # Given: 2026 in "MARATHON 2026" and, elsewhere, a bib reading 2026
    reading = extract_bibs(_response(
        _detection("MARATHON 2026", "LINE", 0, left=0.1),
        _detection("2026", "LINE", 1, left=0.6),
        _detection("MARATHON", "WORD", 2, parent=0, left=0.1),
        _detection("2026", "WORD", 3, parent=0, left=0.2),
        _detection("2026", "WORD", 4, parent=1, left=0.6)), settings)
    # Then: the lone read is the bib; the word of the text line stays a near miss
    assert [(bib["number"], bib["box"]["Left"]) for bib in reading.bibs] == [("2026", 0.6)]
    assert [(miss["box"]["Left"], miss["why"]) for miss in reading.near_misses] == [
        (0.2, IN_TEXT_LINE)]


@pytest.mark.parametrize(("text", "left", "width", "why"), [
    # A number whose box touches the photo's left or right edge may have lost digits.
    ("3761", 0.0, None, AT_FRAME_EDGE),
    ("3761", 0.88, None, AT_FRAME_EDGE),
    # "14" read from a line of another script 7 digits wide: the rest is unread text.
    ("14", 0.2, 0.4, BOX_WIDER_THAN_DIGITS),
    # "025" of 1025: a leading zero is a digit from the middle of a number.
    ("025", 0.4, None, LEADING_ZERO),
])
def test_given_a_read_that_may_not_be_the_whole_number_then_it_is_a_near_miss(
        settings: Settings, text: str, left: float, width: float | None, why: str) -> None:
    # Given: one LINE on a 1200x800 photo
    response = _response(_detection(text, "LINE", 0, left=left, width=width))
    # When
    reading = extract_bibs(response, settings, image_size=(1200, 800))
    # Then: kept and shown, never a bib
    assert reading.bibs == []
    assert [(miss["number"], miss["why"]) for miss in reading.near_misses] == [(text, why)]


def test_given_a_number_at_the_bottom_edge_then_it_is_still_a_bib(settings: Settings) -> None:
    # Given: a whole bib whose box reaches the bottom of the photo (the top or bottom
    # edge cuts every digit a little, never digits off the number)
    detection = _detection("10246", "LINE", 0)
    detection["Geometry"]["BoundingBox"]["Top"] = 0.95
    # When
    reading = extract_bibs(_response(detection), settings, image_size=(1200, 800))
    # Then
    assert [bib["number"] for bib in reading.bibs] == ["10246"]


def test_given_the_photo_size_then_the_width_check_uses_pixels(settings: Settings) -> None:
    # Given: a 4-digit read 0.16 wide and 0.05 high: on a square photo 0.8 of its height
    # per digit (a bib), on a 4:1 panorama 3.2 per digit (not digits alone)
    response = _response(_detection("3761", "LINE", 0, width=0.16))
    # Then
    assert extract_bibs(response, settings, image_size=(1000, 1000)).bibs != []
    assert [miss["why"] for miss in extract_bibs(
        response, settings, image_size=(4000, 1000)).near_misses] == [BOX_WIDER_THAN_DIGITS]
