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
    problem that only caps a FAIL; ``AGE_OUTSIDE_CATEGORY`` the estimated age range misses
    the category by more than the tolerance: ``age_tolerance_years`` when it looks older,
    ``age_tolerance_younger_years`` when it looks younger (never FAIL: estimates are wide,
    and biased young for fit athletes); ``BIB_UNREGISTERED`` a whole, trusted read of a
    number that is not in the registration list, on the chest of a visible runner (bandit
    or fake bib); ``ONE_RUNNER_SEVERAL_BIBS`` one face is linked to several registered
    numbers (bib mule, or a neighbour's bib whose wearer faces away);
    ``SAME_BIB_TWICE`` one number read at two places, linked to two different faces
    (copied bib, or a misread).
    With timing data and a photo point for the photo (see ``racecheck.core.photo_timing``):
    ``TIMING_MISMATCH`` the photo's time is further from the time the bib's chip passed the
    photo point than the tolerance (someone else wore the bib, or the chip went with
    someone else); ``MISSED_CHECKPOINT`` the bib is photographed past mats none of which
    read its chip (joined the course late, a copied bib without chip, or the chip is
    elsewhere). An unregistered bib without any chip read gets neither: it is a
    ``BIB_UNREGISTERED`` already.
caps FAIL at REVIEW
    ``LOW_CONFIDENCE`` the linked face has a quality problem, given alongside as
    ``FACE_SUNGLASSES``, ``FACE_OCCLUDED`` or ``FACE_SMALL`` (under ``face_min_size_px``,
    AWS's 50 x 50 px at 1920 x 1080, proportionally more in larger photos).
no gender or age finding
    ``LOW_CONFIDENCE`` with ``FACE_LOW_CONFIDENCE`` (below ``face_min_confidence``),
    ``FACE_BLURRED`` (sharpness below ``face_min_sharpness``) or ``FACE_TURNED`` (yaw over
    45 or pitch over 30 degrees, AWS's limits for face analysis): the face's estimates are
    noise, so a differing gender is only ``GENDER_UNCERTAIN`` and the age ``AGE_UNKNOWN``.
PASS (information only)
    ``NO_BIB`` no bib in the photo; ``NO_FACE_FOR_BIB`` no face sits above the bib (wearer
    turned away, out of frame); ``AMBIGUOUS_LINK`` two faces fit the bib about equally, so
    it is left unlinked rather than guessed; ``GENDER_UNCERTAIN`` the estimate differs but
    below ``gender_review_confidence`` or on an unreliable face; ``AGE_UNKNOWN`` the face
    has no usable age estimate; ``UNREGISTERED_NO_WEARER`` an unregistered number nobody
    visible wears (a banner, a clock, a car); ``NEAR_REGISTERED`` an unregistered read one
    digit longer or shorter than a registered number (that runner's bib misread, named in
    the link's ``near``); ``SHORT_READ`` a read of a length the race hardly issues (at most
    ``SHORT_SHARE`` of the registered numbers are as short): far more often a fragment of
    a longer bib than a bib, so it is not used (``hints`` name the registered numbers it
    may be part of); ``PHOTO_TIME_UNKNOWN`` the photo has a photo point and its bibs have
    timing data, but the photo has no EXIF capture time, so the chip could not be compared.

Reads never reach these rules as bibs when ``extract_bibs`` made them near misses
(``AT_FRAME_EDGE``, ``BOX_WIDER_THAN_DIGITS``, ``LEADING_ZERO``, and the settings' rules);
near misses one digit away from registered numbers are listed in ``Decision.hints``.

A photo without any bib is PASS with ``NO_BIB``: it is not suspicious, and a separate
verdict would only add a state for alerts to ignore. Likewise a bib whose wearer cannot be
seen is PASS with a reason, because one photo's absence of a face is no evidence.

A runner registered ``X`` (non-binary) has no gender to compare: the gender comparison is
skipped (never ``GENDER_MISMATCH`` or ``GENDER_UNCERTAIN``, and the gender estimate never
counts as a confirmation); the age is compared as for everyone.

Per bib the decision also states the outcome for the evidence counters across photos:
``inconsistent`` when a mismatch finding exists (face evidence: ``GENDER_MISMATCH``,
``AGE_OUTSIDE_CATEGORY``, ``ONE_RUNNER_SEVERAL_BIBS``, ``SAME_BIB_TWICE``; timing evidence:
``TIMING_MISMATCH``, ``MISSED_CHECKPOINT``), else ``consistent`` when the face confirms
gender (at >= ``gender_review_confidence``) or age, else ``unknown``. A photo whose time
fits the chip is not counted as consistent: it shows the bib travelled with its chip, not
who wore either (a mule's photos fit every chip he carries). Face quality problems that cap
the verdict do not change the outcome: the counters decide over several photos.
``Decision.evidence`` merges the links that carry the same number (one entry per number, the
worst outcome wins).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from racecheck.core.bibs import LEADING_ZERO, SAME_PLACE_OVERLAP, box_overlap
from racecheck.core.linking import AMBIGUOUS, link_bibs_to_faces
from racecheck.core.photo_timing import MISSED_CHECKPOINT, TIMING_MISMATCH, check_passing
from racecheck.core.registry import NON_BINARY, Runner
from racecheck.core.settings import Settings
from racecheck.core.timing import Checkpoint

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
FACE_SMALL = "FACE_SMALL"
FACE_TURNED = "FACE_TURNED"
GENDER_UNCERTAIN = "GENDER_UNCERTAIN"
AGE_UNKNOWN = "AGE_UNKNOWN"
NO_BIB = "NO_BIB"
NO_FACE_FOR_BIB = "NO_FACE_FOR_BIB"
AMBIGUOUS_LINK = "AMBIGUOUS_LINK"
PHOTO_TIME_UNKNOWN = "PHOTO_TIME_UNKNOWN"
UNREGISTERED_NO_WEARER = "UNREGISTERED_NO_WEARER"
NEAR_REGISTERED = "NEAR_REGISTERED"
SHORT_READ = "SHORT_READ"

MISMATCH_CODES = frozenset(
    {GENDER_MISMATCH, AGE_OUTSIDE_CATEGORY, ONE_RUNNER_SEVERAL_BIBS, SAME_BIB_TWICE}
)
TIMING_CODES = frozenset({TIMING_MISMATCH, MISSED_CHECKPOINT})
# The kinds of evidence a suspect can rest on, by the reason codes that make a photo
# inconsistent: what the suspect alert should name.
EVIDENCE_KINDS = {"face": MISMATCH_CODES, "timing": TIMING_CODES}

MAX_HINTS = 3
# A read is short when at most this share of the race's registered numbers is as short:
# a length the race hardly issues is far more often a fragment of a longer bib (a digit
# under an arm, a fold, the frame) than the bib of one of the few runners holding it.
SHORT_SHARE = 0.1

# AWS's recommendations for face analysis ("Recommendations for camera setup" and "...for
# facial comparison input images", Amazon Rekognition developer guide): a face of at least
# 50 x 50 pixels in an image of up to 1920 x 1080 (proportionally more in larger images),
# turned (yaw) less than 45 degrees either way, tilted (pitch) less than 30 degrees down and
# 45 up. The size is a setting (face_min_size_px); the angles are the guide's.
REFERENCE_IMAGE_PIXELS = 1920 * 1080
MAX_YAW_DEGREES = 45.0
MAX_PITCH_DEGREES = 30.0
# Problems that make the face's estimates noise rather than weak evidence: a mismatch on
# such a face is GENDER_UNCERTAIN and an age outside the category is not concluded. The
# others (sunglasses, a hand over the face, a face under AWS's recommended size) only keep
# a confident mismatch from FAIL: on the RBNR photos, small faces' confident estimates were
# right for most deliberately mis-registered runners, so ignoring them lost real flags.
UNRELIABLE_FACE = frozenset({FACE_TURNED, FACE_BLURRED, FACE_LOW_CONFIDENCE})

_GENDER_CODES = {"male": "M", "m": "M", "female": "F", "f": "F"}


@dataclass(frozen=True)
class Decision:
    verdict: str
    reasons: list[str]
    links: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    # Reads not used as bibs (near misses, short reads) that may be registered numbers
    # misread: for a reviewer, never bibs.
    hints: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "links": [dict(link) for link in self.links],
            "summary": self.summary,
            "evidence": [dict(entry) for entry in self.evidence],
            "hints": [dict(hint) for hint in self.hints],
        }


@dataclass(frozen=True)
class PhotoTiming:
    """Where and when the photo was taken, and the chip reads of its bibs."""

    point_km: float
    photo_seconds: float | None  # POSIX seconds, clock offset taken off; None without EXIF
    course: tuple[Checkpoint, ...]
    reads: Mapping[str, Mapping[str, float]]  # bibs without any read are absent


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
                 image_height: int | None = None,
                 near_misses: Sequence[Mapping[str, Any]] = (),
                 number_lengths: Mapping[int, int] | None = None,
                 timing: PhotoTiming | None = None) -> Decision:
    """The verdict on one photo.

    ``runners`` must hold every registered number among ``numbers_to_look_up(bibs,
    near_misses)``: the numbers read, and the registered numbers a read may be a misread of.
    ``number_lengths``: how many registered numbers have each count of digits (see
    ``registry.number_lengths``); with it, reads of a length the race hardly issues are
    not used as bibs (``SHORT_READ``). ``timing``: the chip reads of the photo's bibs and
    the photo's time and place, when the photo was taken at a photo point.
    """
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
    padded = [miss for miss in near_misses
              if miss.get("why") == LEADING_ZERO and is_padded(str(miss["number"]),
                                                                number_lengths)]
    near_misses = [miss for miss in near_misses if miss not in padded]
    distinct_bibs = merge_repeated_reads(
        [*bibs, *({key: value for key, value in miss.items() if key != "why"}
                  for miss in padded)])
    short = [bib for bib in distinct_bibs if is_short(str(bib["number"]), number_lengths)]
    distinct_bibs = [bib for bib in distinct_bibs if bib not in short]
    hints = _hints([*[{**bib, "why": SHORT_READ} for bib in short], *near_misses], runners)
    if not distinct_bibs:
        if short:
            return Decision(PASS, [SHORT_READ], hints=hints,
                            summary="No whole bib read: only numbers shorter than the "
                                    "race's bibs, kept as hints.")
        return Decision(PASS, [NO_BIB], summary="No bib in the photo: nothing to check.")
    if faces is None:
        return error_decision([FACES_MISSING])

    raw_links = link_bibs_to_faces(distinct_bibs, faces, image_width=image_width,
                                   image_height=image_height)
    links = [
        _judge_link(raw["bib"], raw["face_index"], raw["why"], faces, runners, settings,
                    (image_width, image_height) if image_width and image_height else None)
        for raw in raw_links
    ]
    _flag_shared_faces_and_numbers(links)
    if timing is not None:
        _compare_with_chips(links, timing)
    verdict = worst(link["verdict"] for link in links)
    reasons = unique([*(code for link in links for code in link["findings"]),
                      *([SHORT_READ] if short else [])])
    return Decision(
        verdict=verdict,
        reasons=reasons,
        links=links,
        summary=_summary(verdict, links),
        evidence=_evidence(links),
        hints=hints,
    )


def is_padded(number: str, number_lengths: Mapping[int, int] | None) -> bool:
    """Whether a read with leading zeros is as wide as the race's widest numbers: a race
    that prints ``0891`` pads every bib to the width of its largest number."""
    return bool(number_lengths) and len(number) == max(number_lengths or {0: 0})


def is_short(number: str, number_lengths: Mapping[int, int] | None) -> bool:
    """Whether the race hardly issues numbers this short (see ``SHORT_SHARE``)."""
    if not number_lengths:
        return False
    digits = len(number.lstrip("0") or "0")
    total = sum(number_lengths.values())
    as_short = sum(count for length, count in number_lengths.items() if length <= digits)
    return total > 0 and as_short <= SHORT_SHARE * total


def merge_repeated_reads(bibs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drop a read of a number whose box overlaps an earlier, more confident read of it."""
    ordered = sorted(enumerate(bibs), key=lambda item: -float(item[1].get("confidence") or 0))
    kept: list[tuple[int, Mapping[str, Any]]] = []
    for index, bib in ordered:
        if any(
            str(other["number"]) == str(bib["number"])
            and box_overlap(other.get("box"), bib.get("box")) >= SAME_PLACE_OVERLAP
            for _, other in kept
        ):
            continue
        kept.append((index, bib))
    return [bib for _, bib in sorted(kept, key=lambda item: item[0])]


def _judge_link(bib: Mapping[str, Any], face_index: int | None, why: str,
                faces: Sequence[Mapping[str, Any]], runners: Mapping[str, Runner],
                settings: Settings, image_size: tuple[int, int] | None = None
                ) -> dict[str, Any]:
    number = str(bib["number"])
    runner = registered_runner(number, runners)
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
        near = misread_of(number, runners)
        if near:
            # A registered number with a digit missing or one too many: that runner's bib
            # misread (a fragment, a fold, a smudge), not a bandit's.
            link["findings"] = [NEAR_REGISTERED]
            link["near"] = near
        elif face is None:
            # Nobody wears it (a banner, a clock, a car) or its wearer cannot be seen.
            link["findings"] = [UNREGISTERED_NO_WEARER]
        else:
            link["findings"] = [BIB_UNREGISTERED]
            link["verdict"] = REVIEW
        return link
    if face is None:
        link["findings"] = [AMBIGUOUS_LINK if why == AMBIGUOUS else NO_FACE_FOR_BIB]
        return link

    findings: list[str] = []
    confirmations = 0
    verdicts = [PASS]
    quality_problems = face_quality_problems(face, settings, image_size)
    if quality_problems:
        findings += [LOW_CONFIDENCE, *quality_problems]
    reliable = not UNRELIABLE_FACE.intersection(quality_problems)

    gender_finding, gender_verdict, gender_confirms = judge_gender(
        runner, face, settings, clear_face=not quality_problems, reliable=reliable
    )
    confirmations += gender_confirms
    if gender_finding:
        findings.append(gender_finding)
        verdicts.append(gender_verdict)

    age_finding, age_confirms = judge_age(runner, face, settings, reliable=reliable)
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


def face_quality_problems(face: Mapping[str, Any], settings: Settings,
                          image_size: tuple[int, int] | None = None) -> list[str]:
    """The face's quality problems, by how they earn their code (see the module doc)."""
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
    if image_size is not None and _face_side_px(face, image_size) < _min_face_side_px(
            image_size, settings):
        problems.append(FACE_SMALL)
    yaw, pitch = face.get("yaw"), face.get("pitch")
    if ((yaw is not None and abs(float(yaw)) > MAX_YAW_DEGREES)
            or (pitch is not None and abs(float(pitch)) > MAX_PITCH_DEGREES)):
        problems.append(FACE_TURNED)
    return problems


def _face_side_px(face: Mapping[str, Any], image_size: tuple[int, int]) -> float:
    """The side of a square of the face box's area, in pixels (``50 x 50`` in AWS's words)."""
    box = face.get("box") or {}
    try:
        width = float(box["Width"]) * image_size[0]
        height = float(box["Height"]) * image_size[1]
    except (KeyError, TypeError, ValueError):
        return float("inf")  # no usable box: the size cannot be judged
    return float((max(0.0, width) * max(0.0, height)) ** 0.5)


def _min_face_side_px(image_size: tuple[int, int], settings: Settings) -> float:
    scale = max(1.0, (image_size[0] * image_size[1] / REFERENCE_IMAGE_PIXELS) ** 0.5)
    return settings.face_min_size_px * scale


def judge_gender(runner: Runner, face: Mapping[str, Any], settings: Settings, *,
                 clear_face: bool, reliable: bool = True) -> tuple[str | None, str, int]:
    """(finding or None, verdict it earns, 1 if the face confirms the registered gender).

    ``reliable``: False when the face is too small, blurred, turned or doubtful for its
    estimate to count, however confident the estimate: it then neither confirms nor
    contradicts the registration.
    """
    if runner.gender == NON_BINARY:
        # Nothing to compare a face with: neither a mismatch nor a confirmation.
        return None, PASS, 0
    estimated = _GENDER_CODES.get(str(face.get("gender") or "").lower())
    confidence = float(face.get("gender_confidence") or 0.0)
    if not reliable or estimated is None or confidence < settings.gender_review_confidence:
        if estimated is not None and estimated != runner.gender:
            return GENDER_UNCERTAIN, PASS, 0
        return None, PASS, 0
    if estimated == runner.gender:
        return None, PASS, 1
    certain = confidence >= settings.gender_fail_confidence and clear_face
    return GENDER_MISMATCH, FAIL if certain else REVIEW, 0


def judge_age(runner: Runner, face: Mapping[str, Any], settings: Settings, *,
              reliable: bool = True) -> tuple[str | None, int]:
    """(finding or None, 1 if the estimated range meets the category within the tolerance)."""
    low, high = face.get("age_low"), face.get("age_high")
    if low is None or high is None or not reliable:
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
    # Only registered numbers count: an unregistered read is already a finding of its own,
    # and a fragment of the runner's own bib is no second bib.
    judged = [link for link in links
              if link["face_index"] is not None and link["registered"] is not None]
    for link in judged:
        numbers_on_face.setdefault(link["face_index"], set()).add(link["bib"])
        faces_of_number.setdefault(link["bib"], set()).add(link["face_index"])
    for link in judged:
        added = []
        if len(numbers_on_face[link["face_index"]]) > 1:
            added.append(ONE_RUNNER_SEVERAL_BIBS)
        if len(faces_of_number[link["bib"]]) > 1:
            added.append(SAME_BIB_TWICE)
        if added:
            link["findings"] = unique([*link["findings"], *added])
            link["verdict"] = worst([link["verdict"], REVIEW])
            link["outcome"] = INCONSISTENT


def _compare_with_chips(links: list[dict[str, Any]], timing: PhotoTiming) -> None:
    for link in links:
        times = timing.reads.get(link["bib"])
        if times is None and link["registered"] is None:
            continue
        if timing.photo_seconds is None:
            link["findings"] = unique([*link["findings"], PHOTO_TIME_UNKNOWN])
            continue
        check = check_passing(course=timing.course, times=times, point_km=timing.point_km,
                              photo_seconds=timing.photo_seconds)
        link["timing"] = check.to_dict()
        if check.findings:
            link["findings"] = unique([*link["findings"], *check.findings])
            link["verdict"] = worst([link["verdict"], REVIEW])
            link["outcome"] = INCONSISTENT


def evidence_kinds(evidence: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """What a runner's inconsistent photos rest on, per kind of evidence, for the alert.

    ``evidence`` is the runner's evidence item (plain values), whose ``reason_<CODE>``
    counters count photos per reason: ``{"face": {"GENDER_MISMATCH": 2}, "timing":
    {"TIMING_MISMATCH": 1}}``; kinds without any count are left out.
    """
    kinds: dict[str, dict[str, int]] = {}
    for kind, codes in EVIDENCE_KINDS.items():
        counts = {code: int(evidence[f"reason_{code}"]) for code in sorted(codes)
                  if int(evidence.get(f"reason_{code}") or 0) > 0}
        if counts:
            kinds[kind] = counts
    return kinds


def registered_runner(number: str, runners: Mapping[str, Runner]) -> Runner | None:
    """The runner registered on a number, as read or without its leading zeros (a list
    kept in a spreadsheet drops the zeros the bib prints: ``0891`` is ``891``)."""
    return runners.get(number) or runners.get(number.lstrip("0") or "0")


def one_digit_away(number: str) -> list[str]:
    """Numbers with one digit more or one digit fewer: what a read that lost a digit, or
    gained one, may have been (``376`` <- ``3761``, ``24207`` <- ``4207``)."""
    longer = {number[:index] + digit + number[index:]
              for index in range(len(number) + 1) for digit in "0123456789"}
    shorter = {number[:index] + number[index + 1:] for index in range(len(number))}
    return sorted(candidate for candidate in longer | shorter
                  if candidate and not candidate.startswith("0") and candidate != number)


def misread_of(number: str, runners: Mapping[str, Runner]) -> list[str]:
    """Registered numbers the read is one digit away from."""
    return [candidate for candidate in one_digit_away(number.lstrip("0") or "0")
            if candidate in runners]


def numbers_to_look_up(bibs: Sequence[Mapping[str, Any]],
                       near_misses: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Every number whose registration ``decide_photo`` may read (for one BatchGetItem per
    100): each number read, without its leading zeros, and one digit away."""
    numbers: set[str] = set()
    for read in [*bibs, *near_misses]:
        number = str(read["number"])
        stripped = number.lstrip("0") or "0"
        numbers |= {number, stripped, *one_digit_away(stripped)}
    return sorted(numbers)


def _hints(near_misses: Sequence[Mapping[str, Any]], runners: Mapping[str, Runner]
           ) -> list[dict[str, Any]]:
    hints = []
    for miss in near_misses:
        number = str(miss.get("number", ""))
        if not number.isdigit():
            continue
        near = misread_of(number, runners)
        # In a race numbered densely every number has registered neighbours: a hint then
        # says nothing.
        if 0 < len(near) <= MAX_HINTS:
            hints.append({"read": number, "why": miss.get("why"), "registered": near})
    return hints


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
        parts = [f"{_describe(link)}: {', '.join(link['findings'])}"
                 + (f" ({link['timing']['summary']})"
                    if TIMING_CODES.intersection(link["findings"]) else "")
                 for link in flagged]
        return f"{verdict}: " + "; ".join(parts) + "."
    outcomes = Counter(link["outcome"] for link in links)
    return (f"PASS: {len(links)} bib(s), {outcomes[CONSISTENT]} consistent with the "
            f"registration, {outcomes[UNKNOWN]} without evidence.")
