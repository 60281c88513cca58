"""How well the offline pipeline reads bibs on labelled race photos (RBNR format), and how
many clean photos its verdicts would send to a person.

The pipeline under test is the product's: ``LocalRekognition.detect_text`` ->
``extract_bibs`` (settings from cdk.json) for bibs, ``LocalRekognition.detect_faces`` ->
``faces_from_rekognition`` -> ``link_bibs_to_faces`` for links, and with a registration
list ``decide_photo`` for the verdict.

Every reported bib (a *read*) is judged by where it sits. The known bibs of a photo are
RBNR's labels plus, when given, a list of the legible bibs RBNR left unlabelled (checked by
eye; ``benchmarks/data/rbnr_unlabelled_bibs.json``):

* a read whose box overlaps a known bib by at least half of either box is *on* that bib:
  right when its number is the bib's (leading zeros aside: bib ``0891`` is labelled
  ``891``), a *misread* otherwise;
* a read on no known bib is *off-bib*: a number on a banner, a fragment of an unlisted
  bib, or noise. Without the list of unlabelled bibs it may also be a real bib nobody
  listed; it is counted wrong all the same.

Figures: *recall* is the share of labelled bibs read right at their place (two reads of
one bib count once); *precision* counts only the reads on labelled bibs; *strict
precision* counts every read, right ones on any known bib over all reads.

With a registration list (``runners``) every photo also gets the verdict the rules give
it. A photo is *clean* when none of its known runners is registered under another gender
than the one seen (known bibs carry the gender seen on the photo when the list of
unlabelled bibs gives it); the **review burden** is the share of clean photos that come
out REVIEW or FAIL. Photos of a runner registered under the wrong gender (planted on
purpose in a copy of the list) should come out flagged: their *flagged share* is reported
beside it.
"""

from __future__ import annotations

import json
import resource
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from racecheck.core.bibs import extract_bibs
from racecheck.core.faces import FACE_ATTRIBUTES, faces_from_rekognition
from racecheck.core.linking import link_bibs_to_faces
from racecheck.core.registry import Runner, number_lengths
from racecheck.core.rules import FAIL, INCONSISTENT, REVIEW, decide_photo
from racecheck.core.settings import REPOSITORY_ROOT, Settings

GROUND_TRUTH_FILE = "ground_truth.json"
UNLABELLED_BIBS = REPOSITORY_ROOT / "benchmarks" / "data" / "rbnr_unlabelled_bibs.json"
LABELLED_GENDERS = REPOSITORY_ROOT / "benchmarks" / "data" / "rbnr_labelled_genders.json"
ON_A_BIB = 0.5
SAME_FACE_IOU = 0.3
FLAGGED = (REVIEW, FAIL)
RIGHT, MISREAD, OFF_BIB = "right", "misread", "off-bib"

PixelBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class KnownBib:
    """A bib visible on a photo: RBNR's label, or one from the list of unlabelled bibs."""

    number: str
    box: PixelBox
    labelled: bool
    gender: str | None = None
    face_box: PixelBox | None = None


@dataclass(frozen=True)
class JudgedRead:
    number: str
    judgement: str
    on_number: str | None
    on_labelled: bool


@dataclass(frozen=True)
class ImageResult:
    file: str
    labelled: list[str]
    read: list[str]
    linked: list[str]
    reads: list[JudgedRead]
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    misregistered: list[str] = field(default_factory=list)
    # Mis-registered runners whose own bib the verdict found inconsistent.
    caught: list[str] = field(default_factory=list)

    @property
    def misread(self) -> list[str]:
        return sorted(read.number for read in self.reads if read.judgement == MISREAD)

    @property
    def off_bib(self) -> list[str]:
        return sorted(read.number for read in self.reads if read.judgement == OFF_BIB)


@dataclass(frozen=True)
class EvaluationReport:
    folder: str
    images: int
    labelled_bibs: int
    read_bibs: int
    linked_bibs: int
    seconds: float
    peak_rss_mb: float
    extra_bibs: int | None = None
    results: list[ImageResult] = field(default_factory=list)

    def _reads(self, *, on_labelled: bool | None = None,
               judgement: str | None = None) -> int:
        return sum(1 for result in self.results for read in result.reads
                   if (on_labelled is None or read.on_labelled == on_labelled)
                   and (judgement is None or read.judgement == judgement))

    @property
    def reported(self) -> int:
        return self._reads()

    @property
    def right_reads(self) -> int:
        return self._reads(judgement=RIGHT)

    @property
    def right_on_labelled(self) -> int:
        return self._reads(on_labelled=True, judgement=RIGHT)

    @property
    def misreads_on_labelled(self) -> int:
        return self._reads(on_labelled=True, judgement=MISREAD)

    @property
    def misreads(self) -> int:
        return self._reads(judgement=MISREAD)

    @property
    def off_bib_reads(self) -> int:
        return self._reads(judgement=OFF_BIB)

    @property
    def recall(self) -> float:
        return self.read_bibs / self.labelled_bibs if self.labelled_bibs else 0.0

    @property
    def precision(self) -> float:
        judged = self.right_on_labelled + self.misreads_on_labelled
        return self.right_on_labelled / judged if judged else 1.0

    @property
    def strict_precision(self) -> float:
        return self.right_reads / self.reported if self.reported else 1.0

    @property
    def linked_recall(self) -> float:
        return self.linked_bibs / self.labelled_bibs if self.labelled_bibs else 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def decided(self) -> bool:
        return any(result.verdict is not None for result in self.results)

    @property
    def clean_photos(self) -> list[ImageResult]:
        return [result for result in self.results
                if result.verdict is not None and not result.misregistered]

    @property
    def misregistered_photos(self) -> list[ImageResult]:
        return [result for result in self.results
                if result.verdict is not None and result.misregistered]

    @property
    def review_burden(self) -> float | None:
        clean = self.clean_photos
        if not clean:
            return None
        return sum(1 for result in clean if result.verdict in FLAGGED) / len(clean)

    @property
    def flagged_share(self) -> float | None:
        planted = self.misregistered_photos
        if not planted:
            return None
        return sum(1 for result in planted if result.verdict in FLAGGED) / len(planted)

    @property
    def caught_share(self) -> float | None:
        """Photos of a mis-registered runner flagged for that runner's own bib (not for
        something else in the photo)."""
        planted = self.misregistered_photos
        if not planted:
            return None
        return sum(1 for result in planted
                   if result.verdict in FLAGGED and result.caught) / len(planted)

    def reasons_on_clean_photos(self) -> Counter[str]:
        """How many flagged clean photos carry each reason (a photo counts once a reason)."""
        return Counter(reason for result in self.clean_photos
                       if result.verdict in FLAGGED for reason in set(result.reasons))

    def summary(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "images": self.images,
            "labelled_bibs": self.labelled_bibs,
            "recall": round(self.recall, 4),
            "read_bibs": self.read_bibs,
            "precision": round(self.precision, 4),
            "right_on_labelled": self.right_on_labelled,
            "misreads_on_labelled": self.misreads_on_labelled,
            "strict_precision": round(self.strict_precision, 4),
            "right_reads": self.right_reads,
            "reads": self.reported,
            "misreads": self.misreads,
            "off_bib_reads": self.off_bib_reads,
            "extra_known_bibs": self.extra_bibs,
            "linked_recall": round(self.linked_recall, 4),
            "images_per_second": round(self.images_per_second, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }
        if self.decided:
            burden, flagged = self.review_burden, self.flagged_share
            clean = self.clean_photos
            planted = self.misregistered_photos
            figures.update({
                "review_burden": None if burden is None else round(burden, 4),
                "clean_photos": len(clean),
                "clean_photos_flagged": sum(1 for r in clean if r.verdict in FLAGGED),
                "clean_photos_failed": sum(1 for r in clean if r.verdict == FAIL),
                "reasons_on_clean_photos": dict(sorted(self.reasons_on_clean_photos().items())),
                "misregistered_photos": len(planted),
                "misregistered_photos_flagged": sum(1 for r in planted
                                                    if r.verdict in FLAGGED),
                "flagged_share": None if flagged is None else round(flagged, 4),
                "misregistered_photos_caught": sum(1 for r in planted
                                                   if r.verdict in FLAGGED and r.caught),
            })
        return figures

    def to_json(self) -> str:
        return json.dumps(self.summary(), sort_keys=True)

    def details_json(self) -> str:
        return json.dumps({**self.summary(), "results": [asdict(r) for r in self.results]})


def _pixel_box(raw: Mapping[str, float]) -> PixelBox:
    return (float(raw["left"]), float(raw["top"]), float(raw["left"]) + float(raw["width"]),
            float(raw["top"]) + float(raw["height"]))


def _normalized_to_pixels(box: Mapping[str, float], width: int, height: int) -> PixelBox:
    left, top = box["Left"] * width, box["Top"] * height
    return left, top, left + box["Width"] * width, top + box["Height"] * height


def _intersection(a: PixelBox, b: PixelBox) -> float:
    return (max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))


def _area(box: PixelBox) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: PixelBox, b: PixelBox) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def overlaps_by_half(read: PixelBox, bib: PixelBox) -> float:
    """How much the boxes share, as the larger of the two shares; on a bib at >= 0.5."""
    inter = _intersection(read, bib)
    smaller = min(_area(read), _area(bib))
    return inter / smaller if smaller > 0 else 0.0


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_ground_truth(folder: Path) -> list[dict[str, Any]]:
    path = folder / GROUND_TRUTH_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: FOLDER must hold the images and "
                                f"{GROUND_TRUTH_FILE}")
    entries: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return entries


@dataclass(frozen=True)
class ExtraLabels:
    """What ``rbnr_unlabelled_bibs.json`` adds to one set's labels."""

    bibs_by_file: dict[str, list[dict[str, Any]]]
    corrections: dict[tuple[str, str], str]  # (file, labelled number) -> number printed
    genders: dict[str, str] = field(default_factory=dict)  # labelled number -> seen

    @property
    def count(self) -> int:
        return sum(len(bibs) for bibs in self.bibs_by_file.values())


def load_unlabelled_bibs(path: Path, set_name: str) -> ExtraLabels | None:
    """The bibs RBNR did not label on one set (worn bibs, and race numbers not worn such as
    a bike's sticker), by file, and its labels found wrong; None if the set is absent."""
    document = json.loads(path.read_text(encoding="utf-8"))
    entries = document.get("sets", {}).get(set_name)
    if entries is None:
        return None
    entries = [*entries, *document.get("other_numbers", {}).get(set_name, [])]
    by_file: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_file.setdefault(str(entry["file"]), []).append(entry)
    corrections = {(str(error["file"]), str(error["labelled"])): str(error["seen"])
                   for error in document.get("label_errors", [])
                   if str(error.get("seen", "")).isdigit()}
    return ExtraLabels(by_file, corrections, _labelled_genders(set_name))


def _labelled_genders(set_name: str) -> dict[str, str]:
    """The gender seen on each runner RBNR labels, where it is certain."""
    if not LABELLED_GENDERS.is_file():
        return {}
    runners = json.loads(LABELLED_GENDERS.read_text(encoding="utf-8"))["sets"].get(set_name, {})
    return {number: entry["gender"] for number, entry in runners.items()
            if entry.get("certain", True)}


def number_key(number: str) -> str:
    """Leading zeros carry no meaning: bib ``0891`` is labelled ``891`` in RBNR."""
    return number.lstrip("0") or "0"


def known_bibs(entry: Mapping[str, Any], unlabelled: Sequence[Mapping[str, Any]] = (),
               corrections: Mapping[tuple[str, str], str] | None = None,
               genders: Mapping[str, str] | None = None) -> list[KnownBib]:
    """RBNR's labels of a photo (with its known label errors corrected), then the bibs it
    left unlabelled. A bib only partly legible has no number unless another photo of the
    same runner gives it (``likely_number``): any read of it is then wrong, since the
    digits it shows are not the runner's number."""
    corrections, genders = corrections or {}, genders or {}
    bibs = [KnownBib(corrections.get((str(entry["file"]), str(bib["number"])),
                                     str(bib["number"])),
                     _pixel_box(bib["bib_box"]), labelled=True,
                     gender=genders.get(str(bib["number"]), bib.get("gender")),
                     face_box=_pixel_box(bib["face_box"]) if bib.get("face_box") else None)
            for bib in entry["bibs"]]
    for bib in unlabelled:
        whole = bib.get("legible", "full") == "full"
        number = str(bib["number"]) if whole else bib.get("likely_number")
        bibs.append(KnownBib(str(number) if number else "", _pixel_box(bib["bib_box"]),
                             labelled=False, gender=bib.get("gender")))
    return bibs


def judge_read(number: str, box: PixelBox, bibs: Sequence[KnownBib]) -> JudgedRead:
    """Right, misread or off-bib, by the known bib the read sits on."""
    on = [bib for bib in bibs if overlaps_by_half(box, bib.box) >= ON_A_BIB]
    same = [bib for bib in on if bib.number and number_key(bib.number) == number_key(number)]
    if same:
        return JudgedRead(number, RIGHT, same[0].number, same[0].labelled)
    if on:
        best = max(on, key=lambda bib: overlaps_by_half(box, bib.box))
        return JudgedRead(number, MISREAD, best.number or None, best.labelled)
    return JudgedRead(number, OFF_BIB, None, False)


def judge_image(entry: Mapping[str, Any], bibs: Sequence[Mapping[str, Any]],
                faces: Sequence[Mapping[str, Any]], links: Sequence[Mapping[str, Any]],
                unlabelled: Sequence[Mapping[str, Any]] = (),
                corrections: Mapping[tuple[str, str], str] | None = None) -> ImageResult:
    """Compare one photo's reported bibs and links with what is known of it."""
    width, height = int(entry["width"]), int(entry["height"])
    known = known_bibs(entry, unlabelled, corrections)
    labelled = [bib for bib in known if bib.labelled]
    reads = [judge_read(str(bib["number"]),
                        _normalized_to_pixels(bib["box"], width, height), known)
             for bib in bibs]
    read = sorted({read.on_number for read in reads
                   if read.judgement == RIGHT and read.on_labelled and read.on_number})
    linked = []
    for number in read:
        label = next(bib for bib in labelled if bib.number == number)
        face_indexes = [link.get("face_index") for link in links
                        if link["bib"].get("box") is not None
                        and number_key(str(link["bib"]["number"])) == number_key(number)
                        and overlaps_by_half(_normalized_to_pixels(link["bib"]["box"], width,
                                                                   height), label.box)
                        >= ON_A_BIB]
        if label.face_box is None:
            continue
        if any(index is not None
               and _iou(_normalized_to_pixels(faces[index]["box"], width, height),
                        label.face_box) >= SAME_FACE_IOU for index in face_indexes):
            linked.append(number)
    return ImageResult(entry["file"], sorted(bib.number for bib in labelled), read, linked,
                       reads)


def misregistered_numbers(known: Sequence[KnownBib], runners: Mapping[str, Runner]
                          ) -> list[str]:
    """Known bibs on the photo registered under another gender than the one seen."""
    wrong = []
    for bib in known:
        if not bib.number:
            continue
        runner = runners.get(bib.number) or runners.get(number_key(bib.number))
        seen = str(bib.gender or "").upper()[:1]
        if runner is not None and seen in ("M", "F") and runner.gender != seen:
            wrong.append(bib.number)
    return sorted(wrong)


def evaluate_rbnr(folder: Path, *, limit: int | None = None,
                  settings: Settings | None = None,
                  unlabelled_bibs: Path | None = UNLABELLED_BIBS,
                  runners: Mapping[str, Runner] | None = None,
                  detector: Any = None) -> EvaluationReport:
    """Run the offline pipeline over FOLDER's labelled photos and score it.

    ``unlabelled_bibs``: the list of legible bibs RBNR left unlabelled, used when it has an
    entry for FOLDER's name. ``runners``: a registration list; every photo then gets a
    verdict, and the review burden is measured. ``detector``: answers DetectText and
    DetectFaces (default: the offline detectors, ``LocalRekognition``).
    """
    from racecheck.detectors.local import LocalRekognition

    folder = Path(folder)
    entries = load_ground_truth(folder)
    if limit is not None:
        entries = entries[:limit]
    extra = (load_unlabelled_bibs(unlabelled_bibs, folder.name)
             if unlabelled_bibs is not None and unlabelled_bibs.is_file() else None)
    settings = settings or Settings.from_cdk_json()
    detector = detector or LocalRekognition()
    lengths = number_lengths(runners) if runners is not None else None
    results = []
    started = time.perf_counter()
    for entry in entries:
        image_bytes = (folder / entry["file"]).read_bytes()
        width, height = int(entry["width"]), int(entry["height"])
        unlabelled = extra.bibs_by_file.get(entry["file"], []) if extra else []
        corrections = extra.corrections if extra else {}
        reading = extract_bibs(detector.detect_text(image_bytes), settings,
                               image_size=(width, height))
        faces = faces_from_rekognition(detector.detect_faces(image_bytes, FACE_ATTRIBUTES))
        links = link_bibs_to_faces(reading.bibs, faces, image_width=width,
                                   image_height=height)
        result = judge_image(entry, reading.bibs, faces, links, unlabelled, corrections)
        if runners is not None:
            decision = decide_photo(
                image={"accepted": True, "width": width, "height": height},
                moderation={"accepted": True, "labels": [], "reasons": []},
                bibs=reading.bibs, faces=faces, runners=runners, settings=settings,
                image_width=width, image_height=height, near_misses=reading.near_misses,
                number_lengths=lengths)
            wrong = misregistered_numbers(
                known_bibs(entry, unlabelled, corrections, extra.genders if extra else {}),
                runners)
            result = replace(
                result, verdict=decision.verdict, reasons=list(decision.reasons),
                misregistered=wrong,
                caught=sorted({number for number in wrong for link in decision.links
                               if number_key(str(link["bib"])) == number_key(number)
                               and link["outcome"] == INCONSISTENT}))
        results.append(result)
    seconds = time.perf_counter() - started
    return EvaluationReport(
        folder=str(folder),
        images=len(results),
        labelled_bibs=sum(len(result.labelled) for result in results),
        read_bibs=sum(len(result.read) for result in results),
        linked_bibs=sum(len(result.linked) for result in results),
        seconds=seconds,
        peak_rss_mb=_peak_rss_mb(),
        extra_bibs=None if extra is None else extra.count,
        results=results,
    )


def _share(part: int, whole: int) -> str:
    return f"{part / whole:7.1%}" if whole else "      -"


def format_report(report: EvaluationReport) -> str:
    """Human-readable figures, then the photos where something was missed or misread."""
    labelled_reads = report.right_on_labelled + report.misreads_on_labelled
    known = ("RBNR's labels only: reads off them count as wrong" if report.extra_bibs is None
             else f"RBNR's labels and {report.extra_bibs} unlabelled bibs checked by eye")
    lines = [
        f"RBNR evaluation of {report.folder}: {report.images} photos, "
        f"{report.labelled_bibs} labelled bibs; reads judged against {known}",
        f"  bib recall          {_share(report.read_bibs, report.labelled_bibs)}  "
        f"({report.read_bibs} of {report.labelled_bibs} labelled bibs read right where "
        f"they are)",
        f"  bib precision       {_share(report.right_on_labelled, labelled_reads)}  "
        f"({report.right_on_labelled} right of {labelled_reads} reads on labelled bibs, "
        f"{report.misreads_on_labelled} misread)",
        f"  strict precision    {_share(report.right_reads, report.reported)}  "
        f"({report.right_reads} right of all {report.reported} reads: "
        f"{report.misreads} misread on a bib, {report.off_bib_reads} on no known bib)",
        f"  linked recall       {_share(report.linked_bibs, report.labelled_bibs)}  "
        f"({report.linked_bibs} read and linked to the labelled face)",
        f"  speed               {report.images_per_second:7.2f} photos/s (one process, "
        f"models loaded in the run)",
        f"  peak memory         {report.peak_rss_mb:7.0f} MB RSS",
    ]
    if report.decided:
        clean, planted = report.clean_photos, report.misregistered_photos
        flagged = [result for result in clean if result.verdict in FLAGGED]
        reasons = ", ".join(f"{code} {count}"
                            for code, count in report.reasons_on_clean_photos().most_common())
        lines += [
            f"  review burden       {_share(len(flagged), len(clean))}  ({len(flagged)} of "
            f"{len(clean)} photos of correctly registered runners REVIEW or FAIL, "
            f"{sum(1 for r in clean if r.verdict == FAIL)} FAIL)",
            f"    reasons           {reasons or '-'}",
        ]
        if planted:
            flagged_planted = sum(1 for result in planted if result.verdict in FLAGGED)
            caught = sum(1 for result in planted if result.verdict in FLAGGED and result.caught)
            lines.append(f"  mis-registered      {_share(flagged_planted, len(planted))}  "
                         f"({flagged_planted} of {len(planted)} photos of runners registered "
                         f"under the wrong gender REVIEW or FAIL; {caught} for that runner's "
                         f"own bib)")
    problems = [result for result in report.results
                if set(result.labelled) - set(result.read) or result.misread
                or result.off_bib or result.verdict in FLAGGED]
    if problems:
        lines.append("Photos to look at (missed / misread / on no known bib / verdict):")
        for result in problems:
            missed = sorted(set(result.labelled) - set(result.read))
            verdict = (f", {result.verdict} {' '.join(result.reasons)}"
                       if result.verdict in FLAGGED else "")
            lines.append(f"  {result.file}: missed {missed or '-'}, misread "
                         f"{result.misread or '-'}, off-bib {result.off_bib or '-'}{verdict}")
    return "\n".join(lines)
