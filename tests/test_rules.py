"""The verdict on one photo, from image check, moderation, bibs, faces and registrations."""

from __future__ import annotations

import json
from typing import Any

import pytest

from racecheck.core.registry import Runner
from racecheck.core.rules import (
    CONSISTENT,
    ERROR,
    FAIL,
    INCONSISTENT,
    PASS,
    REJECTED,
    REVIEW,
    UNKNOWN,
    Decision,
    decide_photo,
    error_decision,
)
from racecheck.core.settings import Settings

WIDTH, HEIGHT = 1200, 800
SETTINGS = Settings.from_cdk_json()
ACCEPTED = {"accepted": True, "reasons": []}
CLEAN = {"accepted": True, "labels": [], "reasons": []}


def runner(bib: str, gender: str, age_min: int, age_max: int | None) -> Runner:
    category = f"{age_min}+" if age_max is None else f"{age_min}-{age_max}"
    return Runner(
        bib=bib,
        gender=gender,  # type: ignore[arg-type]
        age_min=age_min,
        age_max=age_max,
        category=category,
    )


def box(left: float, top: float, width: float, height: float) -> dict[str, float]:
    return {
        "Left": left / WIDTH,
        "Top": top / HEIGHT,
        "Width": width / WIDTH,
        "Height": height / HEIGHT,
    }


def face(
    centre_x: float,
    gender: str,
    gender_confidence: float,
    age_low: int,
    age_high: int,
    **quality: Any,
) -> dict[str, Any]:
    """A face 60 px wide with its top at y=100, shaped like the AnalyzeFaces output."""
    return {
        "box": box(centre_x - 30, 100, 60, 60),
        "confidence": 99.9,
        "age_low": age_low,
        "age_high": age_high,
        "gender": gender,
        "gender_confidence": gender_confidence,
        "sunglasses": False,
        "occluded": False,
        "sharpness": 80.0,
        "brightness": 70.0,
        **quality,
    }


def bib(number: str, centre_x: float, centre_y: float = 334.0) -> dict[str, Any]:
    """A bib 54x30 px; at the default height it sits on the chest of a face at y=100."""
    return {"number": number, "confidence": 98.0, "box": box(centre_x - 27, centre_y - 15, 54, 30)}


def decide(
    bibs: list[dict[str, Any]] | None,
    faces: list[dict[str, Any]] | None,
    runners: list[Runner],
    settings: Settings = SETTINGS,
    **inputs: Any,
) -> Decision:
    arguments: dict[str, Any] = {"image": ACCEPTED, "moderation": CLEAN, **inputs}
    return decide_photo(
        bibs=bibs,
        faces=faces,
        runners={r.bib: r for r in runners},
        settings=settings,
        image_width=WIDTH,
        image_height=HEIGHT,
        **arguments,
    )


# The published London Marathon 2017 sample: registrations and Rekognition's estimates of
# the registered runners themselves (none of them cheated).
SEED_TABLE = [
    ("31724", "M", 18, 39, "Male", 99.9, 35, 52),
    ("10297", "M", 18, 39, "Male", 99.9, 29, 45),
    ("12471", "M", 18, 39, "Male", 99.9, 14, 23),
    ("19412", "F", 18, 39, "Female", 100.0, 23, 38),
    ("17970", "F", 45, 49, "Female", 100.0, 20, 38),
    ("21095", "F", 18, 39, "Female", 100.0, 30, 47),
]


@pytest.mark.parametrize("row", SEED_TABLE, ids=[row[0] for row in SEED_TABLE])
def test_seed_table_runners_are_never_failed(row: tuple[Any, ...]) -> None:
    # given a registered runner photographed alone, estimated as Rekognition did
    number, gender, age_min, age_max, estimated, confidence, low, high = row
    # when decided
    decision = decide(
        [bib(number, 600)],
        [face(600, estimated, confidence, low, high)],
        [runner(number, gender, age_min, age_max)],
    )
    # then the runner is not failed, and gender never counts against them
    assert decision.verdict in (PASS, REVIEW)
    assert "GENDER_MISMATCH" not in decision.reasons


def test_seed_table_verdicts_in_detail() -> None:
    # given the six seed photos
    verdicts = {}
    for number, gender, age_min, age_max, estimated, confidence, low, high in SEED_TABLE:
        decision = decide(
            [bib(number, 600)],
            [face(600, estimated, confidence, low, high)],
            [runner(number, gender, age_min, age_max)],
        )
        verdicts[number] = (decision.verdict, tuple(decision.reasons), decision.links[0]["outcome"])
    # then all six pass as consistent: 17970 (45-49, estimated 20-38) looks younger than
    # her category, which the wider younger-side tolerance (10 years) absorbs
    assert set(verdicts.values()) == {(PASS, (), CONSISTENT)}


def test_confident_gender_mismatch_on_a_clear_face_fails() -> None:
    # given a bib registered to a woman worn by someone estimated male at 99.6%
    decision = decide(
        [bib("3631", 600)], [face(600, "Male", 99.6, 25, 35)], [runner("3631", "F", 18, 39)]
    )
    # then FAIL with the mismatch, an inconsistent outcome and a sentence for the alert
    assert decision.verdict == FAIL
    assert decision.reasons == ["GENDER_MISMATCH"]
    assert decision.links[0]["outcome"] == INCONSISTENT
    assert decision.links[0]["registered"] == {
        "gender": "F",
        "age_min": 18,
        "age_max": 39,
        "category": "18-39",
        "name": None,
    }
    assert decision.links[0]["estimated"] == {
        "gender": "M",
        "gender_confidence": 99.6,
        "age_low": 25,
        "age_high": 35,
    }
    assert "bib 3631" in decision.summary and "GENDER_MISMATCH" in decision.summary


@pytest.mark.parametrize(
    ("confidence", "verdict", "reasons", "outcome"),
    [
        (99.0, FAIL, ["GENDER_MISMATCH"], INCONSISTENT),
        (98.9, REVIEW, ["GENDER_MISMATCH"], INCONSISTENT),
        (90.0, REVIEW, ["GENDER_MISMATCH"], INCONSISTENT),
        (89.9, PASS, ["GENDER_UNCERTAIN"], CONSISTENT),
    ],
)
def test_gender_thresholds(
    confidence: float, verdict: str, reasons: list[str], outcome: str
) -> None:
    # given a gender mismatch at a given confidence (age fits, so age confirms)
    decision = decide(
        [bib("5", 600)], [face(600, "Female", confidence, 25, 35)], [runner("5", "M", 18, 39)]
    )
    # then FAIL from gender_fail_confidence (99), REVIEW from gender_review_confidence (90)
    assert (decision.verdict, decision.reasons, decision.links[0]["outcome"]) == (
        verdict,
        reasons,
        outcome,
    )


def test_fail_threshold_comes_from_settings() -> None:
    # given a stricter configured threshold than the estimate's confidence
    strict = Settings.from_cdk_json(overrides={"gender_fail_confidence": 99.95})
    decision = decide(
        [bib("5", 600)],
        [face(600, "Female", 99.9, 25, 35)],
        [runner("5", "M", 18, 39)],
        settings=strict,
    )
    # then the mismatch is only sent to review
    assert decision.verdict == REVIEW


@pytest.mark.parametrize(
    ("quality", "detail"),
    [
        ({"sunglasses": True}, "FACE_SUNGLASSES"),
        ({"occluded": True}, "FACE_OCCLUDED"),
        ({"confidence": 85.0}, "FACE_LOW_CONFIDENCE"),
        ({"sharpness": 5.0}, "FACE_BLURRED"),
    ],
)
def test_poor_face_quality_turns_a_fail_into_review(quality: dict[str, Any], detail: str) -> None:
    # given a confident gender mismatch on a face with a quality problem
    decision = decide(
        [bib("5", 600)], [face(600, "Female", 99.9, 25, 35, **quality)], [runner("5", "M", 18, 39)]
    )
    # then a person reviews it rather than the system guessing
    assert decision.verdict == REVIEW
    assert decision.reasons == ["LOW_CONFIDENCE", detail, "GENDER_MISMATCH"]


def test_poor_face_quality_alone_still_passes() -> None:
    # given a matching runner in sunglasses
    decision = decide(
        [bib("5", 600)],
        [face(600, "Male", 99.9, 25, 35, sunglasses=True)],
        [runner("5", "M", 18, 39)],
    )
    # then nothing is suspicious; the reason records the weaker evidence
    assert decision.verdict == PASS
    assert decision.reasons == ["LOW_CONFIDENCE", "FACE_SUNGLASSES"]


@pytest.mark.parametrize(
    ("age_min", "age_max", "low", "high", "outside"),
    [
        (45, 49, 30, 35, False),  # looks younger: 35 + 10 reaches 45
        (45, 49, 30, 34, True),
        (18, 39, 44, 60, False),  # looks older: 44 - 5 reaches 39
        (18, 39, 45, 60, True),
        (70, None, 80, 99, False),  # open-ended category
        (70, None, 40, 59, True),
        (45, 45, 38, 52, False),  # exact age from a birth date
    ],
)
def test_age_ranges_are_compared_with_the_tolerance_and_never_fail(
    age_min: int, age_max: int | None, low: int, high: int, outside: bool
) -> None:
    # given an estimated range against a category: 5 years' tolerance older, 10 younger
    decision = decide(
        [bib("8", 600)], [face(600, "Male", 99.9, low, high)], [runner("8", "M", age_min, age_max)]
    )
    # then outside the tolerance is REVIEW at most
    expected = (REVIEW, ["AGE_OUTSIDE_CATEGORY"]) if outside else (PASS, [])
    assert (decision.verdict, decision.reasons) == expected


def test_photo_without_bib_passes_with_no_bib() -> None:
    decision = decide([], None, [])
    assert (decision.verdict, decision.reasons, decision.links) == (PASS, ["NO_BIB"], [])


def test_rejected_image_keeps_its_reasons() -> None:
    # given an image check that rejected the file
    rejected = {"accepted": False, "reasons": ["IMAGE_TOO_SMALL", "IMAGE_TOO_SMALL"]}
    decision = decide(None, None, [], image=rejected, moderation=None)
    # then REJECTED, reasons deduplicated
    assert (decision.verdict, decision.reasons) == (REJECTED, ["IMAGE_TOO_SMALL"])


def test_moderation_block_rejects_even_with_bibs() -> None:
    blocked = {"accepted": False, "labels": [], "reasons": ["MODERATION:Explicit"]}
    decision = decide(
        [bib("5", 600)],
        [face(600, "Female", 99.9, 25, 35)],
        [runner("5", "M", 18, 39)],
        moderation=blocked,
    )
    assert (decision.verdict, decision.reasons) == (REJECTED, ["MODERATION:Explicit"])


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ({"image": None}, "IMAGE_NOT_CHECKED"),
        ({"moderation": None}, "MODERATION_MISSING"),
        ({"bibs": None}, "BIBS_MISSING"),
        ({"faces": None}, "FACES_MISSING"),
    ],
)
def test_missing_inputs_are_errors(inputs: dict[str, Any], reason: str) -> None:
    arguments: dict[str, Any] = {"bibs": [bib("5", 600)], "faces": [], **inputs}
    decision = decide(arguments.pop("bibs"), arguments.pop("faces"), [], **arguments)
    assert (decision.verdict, decision.reasons) == (ERROR, [reason])


def test_error_decision_for_a_failed_step() -> None:
    decision = error_decision(["STEP_FAILED:ReadBibs"])
    assert decision.to_dict()["verdict"] == ERROR
    assert "STEP_FAILED:ReadBibs" in decision.summary


def test_multi_runner_photo_judges_each_runner_on_their_own_face() -> None:
    # given three runners in a row and a spectator; the middle bib is worn by a man
    faces = [
        face(300, "Male", 99.9, 25, 35),
        face(600, "Male", 99.8, 30, 40),
        face(900, "Female", 99.9, 40, 50),
        {**face(1100, "Female", 99.9, 60, 70), "box": box(1090, 20, 25, 25)},
    ]
    bibs = [bib("101", 900), bib("102", 600), bib("103", 300)]
    runners = [runner("101", "F", 45, 49), runner("102", "F", 18, 39), runner("103", "M", 18, 39)]
    # when decided
    decision = decide(bibs, faces, runners)
    # then only the middle runner fails, and each bib is linked to the face above it
    assert decision.verdict == FAIL
    assert [link["face_index"] for link in decision.links] == [2, 1, 0]
    assert [link["outcome"] for link in decision.links] == [CONSISTENT, INCONSISTENT, CONSISTENT]
    assert decision.summary.startswith("FAIL: bib 102")
    assert decision.evidence == [
        {"bib": "101", "outcome": CONSISTENT, "reasons": []},
        {"bib": "102", "outcome": INCONSISTENT, "reasons": ["GENDER_MISMATCH"]},
        {"bib": "103", "outcome": CONSISTENT, "reasons": []},
    ]


def test_a_face_with_two_bibs_is_sent_to_review_as_a_possible_mule() -> None:
    # given one runner wearing two registered bibs, one above the other
    bibs = [bib("101", 600, centre_y=300), bib("202", 600, centre_y=360)]
    runners = [runner("101", "M", 18, 39), runner("202", "M", 18, 39)]
    # when decided
    decision = decide(bibs, [face(600, "Male", 99.9, 25, 35)], runners)
    # then REVIEW (a neighbour's bib could fit too) and both numbers count as inconsistent
    assert decision.verdict == REVIEW
    assert decision.reasons == ["ONE_RUNNER_SEVERAL_BIBS"]
    assert [entry["outcome"] for entry in decision.evidence] == [INCONSISTENT, INCONSISTENT]


def test_a_bib_number_seen_on_two_faces_is_sent_to_review() -> None:
    # given two runners wearing the same number
    faces = [face(300, "Male", 99.9, 25, 35), face(800, "Male", 99.9, 25, 35)]
    decision = decide([bib("77", 300), bib("77", 800)], faces, [runner("77", "M", 18, 39)])
    # then REVIEW with SAME_BIB_TWICE, and one inconsistent evidence entry for the number
    assert decision.verdict == REVIEW
    assert decision.reasons == ["SAME_BIB_TWICE"]
    assert decision.evidence == [
        {"bib": "77", "outcome": INCONSISTENT, "reasons": ["SAME_BIB_TWICE"]}
    ]


def test_the_same_bib_read_twice_counts_once() -> None:
    # given OCR returning the number twice for overlapping boxes on one bib
    first = bib("77", 600)
    second = {**bib("77", 605), "confidence": 90.0}
    decision = decide(
        [second, first], [face(600, "Male", 99.9, 25, 35)], [runner("77", "M", 18, 39)]
    )
    # then one link, consistent, and the more confident read is kept
    assert decision.verdict == PASS
    assert len(decision.links) == 1
    assert decision.links[0]["bib_box"] == first["box"]


def test_unregistered_bib_is_sent_to_review() -> None:
    decision = decide([bib("9999", 600)], [face(600, "Male", 99.9, 25, 35)], [])
    assert (decision.verdict, decision.reasons) == (REVIEW, ["BIB_UNREGISTERED"])
    assert decision.links[0]["registered"] is None
    assert decision.evidence == [
        {"bib": "9999", "outcome": UNKNOWN, "reasons": ["BIB_UNREGISTERED"]}
    ]


def test_bib_without_a_face_passes_without_evidence() -> None:
    # given a registered bib whose wearer faces away, and a bystander far to the side
    decision = decide(
        [bib("5", 900)], [face(200, "Female", 99.9, 25, 35)], [runner("5", "M", 18, 39)]
    )
    # then nothing is concluded
    assert (decision.verdict, decision.reasons) == (PASS, ["NO_FACE_FOR_BIB"])
    assert decision.links[0]["outcome"] == UNKNOWN
    assert decision.links[0]["estimated"] is None


def test_ambiguous_link_is_not_guessed() -> None:
    # given a bib exactly between two faces, one of which would mismatch
    faces = [face(570, "Female", 99.9, 25, 35), face(630, "Male", 99.9, 25, 35)]
    decision = decide([bib("5", 600)], faces, [runner("5", "M", 18, 39)])
    # then neither face is blamed
    assert (decision.verdict, decision.reasons) == (PASS, ["AMBIGUOUS_LINK"])


def test_decision_is_json_serializable_with_stable_reason_order() -> None:
    faces = [face(300, "Female", 99.9, 25, 35, sunglasses=True), face(800, "Female", 95.0, 50, 60)]
    decision = decide(
        [bib("1", 300), bib("2", 800)], faces, [runner("1", "M", 18, 39), runner("2", "M", 18, 39)]
    )
    payload = json.loads(json.dumps(decision.to_dict()))
    assert payload["verdict"] == REVIEW
    assert payload["reasons"] == [
        "LOW_CONFIDENCE",
        "FACE_SUNGLASSES",
        "GENDER_MISMATCH",
        "AGE_OUTSIDE_CATEGORY",
    ]


@pytest.mark.parametrize(("estimated", "confidence"),
                         [("Male", 99.9), ("Female", 99.9), ("Male", 60.0)])
def test_a_non_binary_runner_is_never_judged_on_gender(estimated: str, confidence: float) -> None:
    # given a runner registered X, and a clear face of their age estimated confidently or not
    decision = decide([bib("12", 600)], [face(600, estimated, confidence, 25, 35)],
                      [runner("12", "X", 18, 39)])
    # then no gender finding of any kind, and the age alone makes the photo consistent
    assert (decision.verdict, decision.reasons) == (PASS, [])
    assert decision.links[0]["outcome"] == CONSISTENT
    assert decision.links[0]["registered"]["gender"] == "X"


def test_a_non_binary_runner_is_still_judged_on_age() -> None:
    # given a runner registered X 60-69 whose bib is worn by someone estimated 22-30
    decision = decide([bib("12", 600)], [face(600, "Female", 99.9, 22, 30)],
                      [runner("12", "X", 60, 69)])
    # then the age mismatch is reviewed as for anyone, and counts against the runner
    assert (decision.verdict, decision.reasons) == (REVIEW, ["AGE_OUTSIDE_CATEGORY"])
    assert decision.links[0]["outcome"] == INCONSISTENT
    assert "registered X, 60-69" in decision.summary


def test_a_gender_estimate_never_counts_as_consistent_for_a_non_binary_runner() -> None:
    # given a confident gender estimate but no age estimate on the face
    no_age = {**face(600, "Female", 99.9, 25, 35), "age_low": None, "age_high": None}
    registered_f = decide([bib("12", 600)], [no_age], [runner("12", "F", 18, 39)])
    registered_x = decide([bib("12", 600)], [no_age], [runner("12", "X", 18, 39)])
    # then it confirms a runner registered F, but leaves one registered X without evidence
    assert registered_f.links[0]["outcome"] == CONSISTENT
    assert registered_x.links[0]["outcome"] == UNKNOWN
    assert registered_x.evidence == [{"bib": "12", "outcome": UNKNOWN,
                                      "reasons": ["AGE_UNKNOWN"]}]

