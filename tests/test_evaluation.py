"""Scoring bib reads against RBNR labels, and a regression floor on a few real photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from racecheck.evaluation import evaluate_rbnr, format_report, judge_image

RBNR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "rbnr"

ENTRY = {
    "file": "a.jpg", "width": 1000, "height": 1000,
    "bibs": [{"number": "3631",
              "bib_box": {"left": 400, "top": 500, "width": 100, "height": 50},
              "face_box": {"left": 420, "top": 200, "width": 60, "height": 70}}],
}


def _bib(number: str, left: float, top: float) -> dict:
    return {"number": number, "confidence": 99.0,
            "box": {"Left": left, "Top": top, "Width": 0.1, "Height": 0.05}}


def test_given_the_right_number_linked_to_the_right_face_then_it_is_read_and_linked() -> None:
    faces = [{"box": {"Left": 0.42, "Top": 0.2, "Width": 0.06, "Height": 0.07}}]
    bib = _bib("3631", 0.4, 0.5)
    result = judge_image(ENTRY, [bib], faces, [{"bib": bib, "face_index": 0}])
    assert (result.read, result.linked, result.misread, result.unlabelled) == (
        ["3631"], ["3631"], [], [])


def test_given_a_link_to_another_face_then_it_is_read_but_not_linked() -> None:
    faces = [{"box": {"Left": 0.1, "Top": 0.2, "Width": 0.06, "Height": 0.07}}]
    bib = _bib("3631", 0.4, 0.5)
    result = judge_image(ENTRY, [bib], faces, [{"bib": bib, "face_index": 0}])
    assert result.read == ["3631"] and result.linked == []


def test_given_a_wrong_number_on_the_labelled_bib_then_it_is_a_misread() -> None:
    result = judge_image(ENTRY, [_bib("3681", 0.4, 0.5), _bib("2045", 0.05, 0.05)], [], [])
    assert result.read == [] and result.misread == ["3681"]
    assert result.unlabelled == ["2045"]


@pytest.mark.dataset
def test_given_real_race_photos_when_evaluated_then_most_bibs_are_read(tmp_path: Path) -> None:
    if not (RBNR / "set2" / "ground_truth.json").is_file():
        pytest.skip(f"RBNR dataset absent at {RBNR}")
    # Given: the first 12 photos of set 2 (floors set below the 10/13 read, 10/12 right)
    report = evaluate_rbnr(RBNR / "set2", limit=12)
    # Then
    assert report.images == 12
    assert report.recall >= 0.7, format_report(report)
    assert report.precision >= 0.75, format_report(report)
    summary = json.loads(report.to_json())
    assert {"recall", "precision", "linked_recall", "images_per_second",
            "peak_rss_mb"} <= set(summary)


def test_given_a_read_with_a_leading_zero_then_it_matches_the_label_without_it() -> None:
    # Given: the printed bib "03631" labelled "3631"
    faces = [{"box": {"Left": 0.42, "Top": 0.2, "Width": 0.06, "Height": 0.07}}]
    bib = _bib("03631", 0.4, 0.5)
    # When
    result = judge_image(ENTRY, [bib], faces, [{"bib": bib, "face_index": 0}])
    # Then
    assert (result.read, result.linked, result.misread) == (["3631"], ["3631"], [])


def test_given_a_different_number_with_zeros_then_it_is_still_a_misread() -> None:
    result = judge_image(ENTRY, [_bib("36310", 0.4, 0.5)], [], [])
    assert result.read == [] and result.misread == ["36310"]
