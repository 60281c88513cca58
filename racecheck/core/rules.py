"""The verdict on one photo: does each visible bib sit on a person who fits its registration?

Verdicts, most severe first; a photo takes the most severe verdict any of its findings earns:

| verdict | meaning |
| --- | --- |
| ERROR | an input the check needs is missing (a step did not run or failed) |
| REJECTED | the file is not a usable photo, or moderation blocked it; nothing else is checked |
| FAIL | a bib is worn by someone who certainly does not fit its registration |
| REVIEW | something suspicious that one photo cannot settle: a person should look |
| PASS | nothing suspicious (which includes "nothing could be checked": see the reasons) |

Reason codes (``reasons`` lists each once, in the order found), with the verdict each earns:

ERROR
    ``IMAGE_NOT_CHECKED`` no image check result; ``MODERATION_MISSING`` the image was
    accepted but there is no moderation result; ``BIBS_MISSING`` the photo passed moderation
    but bibs were not read; ``FACES_MISSING`` bibs were found but faces were not analysed;
    any code given to ``error_decision`` (a step failed, e.g. ``STEP_FAILED:ReadBibs``).
REJECTED
    From the image check, passed through: ``NOT_AN_IMAGE``, ``UNSUPPORTED_FORMAT``,
    ``IMAGE_TOO_SMALL``, ``IMAGE_TOO_LARGE``, ``FILE_TOO_LARGE``, ``CORRUPT_IMAGE``,
    ``PIXEL_BOMB``, ``EMPTY_FILE`` (``IMAGE_REJECTED`` when it gave none).
    ``MODERATION:<category>``: moderation blocked the photo (``MODERATION:Unspecified``
    when it gave none). Nothing else is checked on a rejected photo.
FAIL
    ``GENDER_MISMATCH`` when the estimate differs from the registered gender at
    >= ``gender_fail_confidence`` (default 99, as AWS advises for decisions about people)
    on a face without quality problems. This is the only single-photo FAIL.
REVIEW
    ``GENDER_MISMATCH`` at >= ``gender_review_confidence``, or on a face with a quality
    problem; ``AGE_OUTSIDE_CATEGORY`` the estimated age range misses the category by more
    than the tolerance: ``age_tolerance_years`` when it looks older,
    ``age_tolerance_younger_years`` when it looks younger (never FAIL: estimates are wide,
    and biased young for fit athletes); ``BIB_UNREGISTERED`` the number is not in the
    registration list (bandit, fake bib or misread); ``ONE_RUNNER_SEVERAL_BIBS`` one face
    is linked to bibs with different numbers (bib mule, or a neighbour's bib whose wearer
    faces away);
    ``SAME_BIB_TWICE`` one number on two bibs linked to two different faces (copied bib, or
    a misread).
caps FAIL at REVIEW
    ``LOW_CONFIDENCE`` the linked face has a quality problem, given alongside as
    ``FACE_SUNGLASSES``, ``FACE_OCCLUDED``, ``FACE_LOW_CONFIDENCE`` (below
    ``face_min_confidence``) or ``FACE_BLURRED`` (sharpness below ``face_min_sharpness``).
PASS (information only)
    ``NO_BIB`` no bib in the photo; ``NO_FACE_FOR_BIB`` no face sits above the bib (wearer
    turned away, out of frame); ``AMBIGUOUS_LINK`` two faces fit the bib about equally, so
    it is left unlinked rather than guessed; ``GENDER_UNCERTAIN`` the estimate differs but
    below ``gender_review_confidence``; ``AGE_UNKNOWN`` the face has no age estimate.

A photo without any bib is PASS with ``NO_BIB``: it is not suspicious, and a separate
verdict would only add a state for alerts to ignore. Likewise a bib whose wearer cannot be
seen is PASS with a reason, because one photo's absence of a face is no evidence.

A runner registered ``X`` (non-binary) has no gender to compare: the gender comparison is
skipped (never ``GENDER_MISMATCH`` or ``GENDER_UNCERTAIN``, and the gender estimate never
counts as a confirmation); the age is compared as for everyone.

Per bib the decision also states the outcome for the evidence counters across photos:
``inconsistent`` when a mismatch finding exists (``GENDER_MISMATCH``,
``AGE_OUTSIDE_CATEGORY``, ``ONE_RUNNER_SEVERAL_BIBS``, ``SAME_BIB_TWICE``), else
``consistent`` when the face confirms gender (at >= ``gender_review_confidence``) or age,
else ``unknown``. Face quality problems cap the verdict but do not change the outcome: the
counters decide over several photos. ``Decision.evidence`` merges the links that carry the
same number (one entry per number, the worst outcome wins).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from racecheck.core.linking import AMBIGUOUS, link_bibs_to_faces
from racecheck.core.registry import NON_BINARY, Runner
from racecheck.core.settings import Settings

PASS = "PASS"
REVIEW = "REVIEW"
FAIL = "FAIL"
REJECTED = "REJECTED"
ERROR = "ERROR"
VERDICTS_BY_SEVERITY = (PASS, REVIEW, FAIL, REJECTED, ERROR)

CONSISTENT = "consistent"
INCONSISTENT = "inconsistent"
UNKNOWN = "unknown"

IMAGE_NOT_CHECKED = "IMAGE_NOT_CHECKED"
MODERATION_MISSING = "MODERATION_MISSING"
BIBS_MISSING = "BIBS_MISSING"
FACES_MISSING = "FACES_MISSING"
IMAGE_REJECTED = "IMAGE_REJECTED"
MODERATION_UNSPECIFIED = "MODERATION:Unspecified"
GENDER_MISMATCH = "GENDER_MISMATCH"
AGE_OUTSIDE_CATEGORY = "AGE_OUTSIDE_CATEGORY"
BIB_UNREGISTERED = "BIB_UNREGISTERED"
ONE_RUNNER_SEVERAL_BIBS = "ONE_RUNNER_SEVERAL_BIBS"
SAME_BIB_TWICE = "SAME_BIB_TWICE"
LOW_CONFIDENCE = "LOW_CONFIDENCE"
FACE_SUNGLASSES = "FACE_SUNGLASSES"
FACE_OCCLUDED = "FACE_OCCLUDED"
FACE_LOW_CONFIDENCE = "FACE_LOW_CONFIDENCE"
FACE_BLURRED = "FACE_BLURRED"
GENDER_UNCERTAIN = "GENDER_UNCERTAIN"
AGE_UNKNOWN = "AGE_UNKNOWN"
NO_BIB = "NO_BIB"
NO_FACE_FOR_BIB = "NO_FACE_FOR_BIB"
AMBIGUOUS_LINK = "AMBIGUOUS_LINK"

MISMATCH_CODES = frozenset(
    {GENDER_MISMATCH, AGE_OUTSIDE_CATEGORY, ONE_RUNNER_SEVERAL_BIBS, SAME_BIB_TWICE}
)

# Rekognition's Quality.Sharpness runs 0..100; below this a face is too blurred to judge.
# Candidate for a setting (``face_min_sharpness``).
# Two reads of one number whose boxes overlap this much are one bib read twice.
SAME_BIB_OVERLAP = 0.3

_GENDER_CODES = {"male": "M", "m": "M", "female": "F", "f": "F"}


@dataclass(frozen=True)
class Decision:
    verdict: str
    reasons: list[str]
    links: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "links": [dict(link) for link in self.links],
            "summary": self.summary,
            "evidence": [dict(entry) for entry in self.evidence],
        }


def worst(verdicts: Iterable[str]) -> str:
    return max(verdicts, key=VERDICTS_BY_SEVERITY.index, default=PASS)


def unique(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(codes))


def error_decision(reasons: Sequence[str]) -> Decision:
    """The decision for a photo whose check could not run (e.g. ``STEP_FAILED:ReadBibs``)."""
    codes = unique(reasons) or ["ERROR"]
    return Decision(ERROR, codes, summary=f"Photo could not be checked: {', '.join(codes)}.")


def decide_photo(*, image: Mapping[str, Any] | None, moderation: Mapping[str, Any] | None,
                 bibs: Sequence[Mapping[str, Any]] | None,
                 faces: Sequence[Mapping[str, Any]] | None, runners: Mapping[str, Runner],
                 settings: Settings, image_width: int | None = None,
                 image_height: int | None = None) -> Decision:
    if image is None:
        return error_decision([IMAGE_NOT_CHECKED])
    if not image.get("accepted"):
        codes = unique(str(code) for code in image.get("reasons") or []) or [IMAGE_REJECTED]
        return Decision(REJECTED, codes, summary=f"Photo rejected: {', '.join(codes)}.")
    if moderation is None:
        return error_decision([MODERATION_MISSING])
    if moderation.get("accepted") is False:
        codes = (unique(str(code) for code in moderation.get("reasons") or [])
                 or [MODERATION_UNSPECIFIED])
        # Rekognition refusing the image itself also arrives through the moderation step.
        by_whom = " by moderation" if all(code.startswith("MODERATION:") for code in codes) else ""
        return Decision(REJECTED, codes, summary=f"Photo rejected{by_whom}: {', '.join(codes)}.")
    if bibs is None:
        return error_decision([BIBS_MISSING])
    distinct_bibs = merge_repeated_reads(bibs)
    if not distinct_bibs:
        return Decision(PASS, [NO_BIB], summary="No bib in the photo: nothing to check.")
    if faces is None:
        return error_decision([FACES_MISSING])

    raw_links = link_bibs_to_faces(distinct_bibs, faces, image_width=image_width,
                                   image_height=image_height)
    links = [
        _judge_link(raw["bib"], raw["face_index"], raw["why"], faces, runners, settings)
        for raw in raw_links
    ]
    _flag_shared_faces_and_numbers(links)
    verdict = worst(link["verdict"] for link in links)
    reasons = unique(code for link in links for code in link["findings"])
    return Decision(
        verdict=verdict,
        reasons=reasons,
        links=links,
        summary=_summary(verdict, links),
        evidence=_evidence(links),
    )


def merge_repeated_reads(bibs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drop a read of a number whose box overlaps an earlier, more confident read of it."""
    ordered = sorted(enumerate(bibs), key=lambda item: -float(item[1].get("confidence") or 0))
    kept: list[tuple[int, Mapping[str, Any]]] = []
    for index, bib in ordered:
        if any(
            str(other["number"]) == str(bib["number"])
            and _overlap(other.get("box"), bib.get("box")) >= SAME_BIB_OVERLAP
            for _, other in kept
        ):
            continue
        kept.append((index, bib))
    return [bib for _, bib in sorted(kept, key=lambda item: item[0])]


def _overlap(first: Any, second: Any) -> float:
    """Intersection over the smaller box (a read of part of a bib counts as the same bib)."""
    try:
        left = max(first["Left"], second["Left"])
        top = max(first["Top"], second["Top"])
        right = min(first["Left"] + first["Width"], second["Left"] + second["Width"])
        bottom = min(first["Top"] + first["Height"], second["Top"] + second["Height"])
        smaller = min(first["Width"] * first["Height"], second["Width"] * second["Height"])
    except (KeyError, TypeError):
        return 0.0
    if right <= left or bottom <= top or smaller <= 0:
        return 0.0
    return float((right - left) * (bottom - top) / smaller)


def _judge_link(bib: Mapping[str, Any], face_index: int | None, why: str,
                faces: Sequence[Mapping[str, Any]], runners: Mapping[str, Runner],
                settings: Settings) -> dict[str, Any]:
    number = str(bib["number"])
    runner = runners.get(number)
    face = faces[face_index] if face_index is not None else None
    link: dict[str, Any] = {
        "bib": number,
        "bib_box": bib.get("box"),
        "face_index": face_index,
        "registered": _registered(runner),
        "estimated": _estimated(face),
        "findings": [],
        "outcome": UNKNOWN,
        "verdict": PASS,
    }
    if runner is None:
        link["findings"] = [BIB_UNREGISTERED]
        link["verdict"] = REVIEW
        return link
    if face is None:
        link["findings"] = [AMBIGUOUS_LINK if why == AMBIGUOUS else NO_FACE_FOR_BIB]
        return link

    findings: list[str] = []
    confirmations = 0
    verdicts = [PASS]
    quality_problems = face_quality_problems(face, settings)
    if quality_problems:
        findings += [LOW_CONFIDENCE, *quality_problems]

    gender_finding, gender_verdict, gender_confirms = judge_gender(
        runner, face, settings, clear_face=not quality_problems
    )
    confirmations += gender_confirms
    if gender_finding:
        findings.append(gender_finding)
        verdicts.append(gender_verdict)

    age_finding, age_confirms = judge_age(runner, face, settings)
    confirmations += age_confirms
    if age_finding:
        findings.append(age_finding)
        if age_finding == AGE_OUTSIDE_CATEGORY:
            verdicts.append(REVIEW)

    link["findings"] = findings
    link["verdict"] = worst(verdicts)
    link["outcome"] = (INCONSISTENT if MISMATCH_CODES.intersection(findings)
                       else CONSISTENT if confirmations else UNKNOWN)
    return link


def face_quality_problems(face: Mapping[str, Any], settings: Settings) -> list[str]:
    problems = []
    if face.get("sunglasses"):
        problems.append(FACE_SUNGLASSES)
    if face.get("occluded"):
        problems.append(FACE_OCCLUDED)
    confidence = face.get("confidence")
    if confidence is not None and float(confidence) < settings.face_min_confidence:
        problems.append(FACE_LOW_CONFIDENCE)
    sharpness = face.get("sharpness")
    if sharpness is not None and float(sharpness) < settings.face_min_sharpness:
        problems.append(FACE_BLURRED)
    return problems


def judge_gender(runner: Runner, face: Mapping[str, Any], settings: Settings, *,
                 clear_face: bool) -> tuple[str | None, str, int]:
    """(finding or None, verdict it earns, 1 if the face confirms the registered gender)."""
    if runner.gender == NON_BINARY:
        # Nothing to compare a face with: neither a mismatch nor a confirmation.
        return None, PASS, 0
    estimated = _GENDER_CODES.get(str(face.get("gender") or "").lower())
    confidence = float(face.get("gender_confidence") or 0.0)
    if estimated is None or confidence < settings.gender_review_confidence:
        if estimated is not None and estimated != runner.gender:
            return GENDER_UNCERTAIN, PASS, 0
        return None, PASS, 0
    if estimated == runner.gender:
        return None, PASS, 1
    certain = confidence >= settings.gender_fail_confidence and clear_face
    return GENDER_MISMATCH, FAIL if certain else REVIEW, 0


def judge_age(runner: Runner, face: Mapping[str, Any], settings: Settings
              ) -> tuple[str | None, int]:
    """(finding or None, 1 if the estimated range meets the category within the tolerance)."""
    low, high = face.get("age_low"), face.get("age_high")
    if low is None or high is None:
        return AGE_UNKNOWN, 0
    # Estimates run young for fit athletes, so looking younger than the category gets more
    # slack than looking older.
    too_young = float(high) + settings.age_tolerance_younger_years < runner.age_min
    too_old = (runner.age_max is not None
               and float(low) - settings.age_tolerance_years > runner.age_max)
    if too_young or too_old:
        return AGE_OUTSIDE_CATEGORY, 0
    return None, 1


def _flag_shared_faces_and_numbers(links: list[dict[str, Any]]) -> None:
    numbers_on_face: dict[int, set[str]] = {}
    faces_of_number: dict[str, set[int]] = {}
    for link in links:
        if link["face_index"] is None:
            continue
        numbers_on_face.setdefault(link["face_index"], set()).add(link["bib"])
        faces_of_number.setdefault(link["bib"], set()).add(link["face_index"])
    for link in links:
        if link["face_index"] is None:
            continue
        added = []
        if len(numbers_on_face[link["face_index"]]) > 1:
            added.append(ONE_RUNNER_SEVERAL_BIBS)
        if len(faces_of_number[link["bib"]]) > 1:
            added.append(SAME_BIB_TWICE)
        if added:
            link["findings"] = unique([*link["findings"], *added])
            link["verdict"] = worst([link["verdict"], REVIEW])
            link["outcome"] = INCONSISTENT


def _registered(runner: Runner | None) -> dict[str, Any] | None:
    if runner is None:
        return None
    return {"gender": runner.gender, "age_min": runner.age_min, "age_max": runner.age_max,
            "category": runner.category, "name": runner.name}


def _estimated(face: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if face is None:
        return None
    return {
        "gender": _GENDER_CODES.get(str(face.get("gender") or "").lower()),
        "gender_confidence": face.get("gender_confidence"),
        "age_low": face.get("age_low"),
        "age_high": face.get("age_high"),
    }


def _evidence(links: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rank = {UNKNOWN: 0, CONSISTENT: 1, INCONSISTENT: 2}
    merged: dict[str, dict[str, Any]] = {}
    for link in links:
        entry = merged.setdefault(link["bib"], {"bib": link["bib"], "outcome": UNKNOWN,
                                                "reasons": []})
        if rank[link["outcome"]] > rank[entry["outcome"]]:
            entry["outcome"] = link["outcome"]
        entry["reasons"] = unique([*entry["reasons"], *link["findings"]])
    return list(merged.values())


def _describe(link: Mapping[str, Any]) -> str:
    registered = link["registered"]
    text = f"bib {link['bib']}"
    if registered:
        bounds = (f"{registered['age_min']}+" if registered["age_max"] is None
                  else f"{registered['age_min']}-{registered['age_max']}")
        text += f" (registered {registered['gender']}, {bounds})"
    estimated = link["estimated"]
    if estimated and estimated["gender"]:
        text += (f", face estimated {estimated['gender']} "
                 f"{float(estimated['gender_confidence'] or 0):.1f}%")
        if estimated["age_low"] is not None:
            text += f", age {estimated['age_low']}-{estimated['age_high']}"
    return text


def _summary(verdict: str, links: Sequence[Mapping[str, Any]]) -> str:
    flagged = [link for link in links if link["verdict"] == verdict and verdict != PASS]
    if flagged:
        parts = [f"{_describe(link)}: {', '.join(link['findings'])}" for link in flagged]
        return f"{verdict}: " + "; ".join(parts) + "."
    outcomes = Counter(link["outcome"] for link in links)
    return (f"PASS: {len(links)} bib(s), {outcomes[CONSISTENT]} consistent with the "
            f"registration, {outcomes[UNKNOWN]} without evidence.")
