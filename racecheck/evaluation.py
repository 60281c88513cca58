"""How well the offline pipeline reads bibs on labelled race photos (RBNR format).

The pipeline under test is the product's: ``LocalRekognition.detect_text`` ->
``extract_bibs`` (settings from cdk.json) for bibs, ``LocalRekognition.detect_faces`` ->
``faces_from_rekognition`` -> ``link_bibs_to_faces`` for links.

The labels are incomplete: each photo labels the runners the dataset's authors chose, and
other runners' bibs, often perfectly legible, are not labelled. So a reported number that
is not a labelled one is judged by where it sits:

* on a labelled bib (it overlaps a labelled bib box): a misread, counted against
  ``precision``;
* anywhere else: ``unlabelled``, which may be a real bib or a false read; those are
  listed for a person to check and counted against ``strict_precision`` only.

A read matches a label when the numbers are equal once leading zeros are dropped: the
printed bib ``0891`` is labelled ``891``.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from racecheck.core.bibs import extract_bibs
from racecheck.core.faces import FACE_ATTRIBUTES, faces_from_rekognition
from racecheck.core.linking import link_bibs_to_faces
from racecheck.core.settings import Settings

GROUND_TRUTH_FILE = "ground_truth.json"
ON_LABELLED_BIB = 0.5
SAME_FACE_IOU = 0.3


@dataclass(frozen=True)
class ImageResult:
    file: str
    labelled: list[str]
    read: list[str]
    linked: list[str]
    misread: list[str]
    unlabelled: list[str]


@dataclass(frozen=True)
class EvaluationReport:
    folder: str
    images: int
    labelled_bibs: int
    read_bibs: int
    linked_bibs: int
    reported: int
    misreads: int
    unlabelled: int
    seconds: float
    peak_rss_mb: float
    results: list[ImageResult] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.read_bibs / self.labelled_bibs if self.labelled_bibs else 0.0

    @property
    def precision(self) -> float:
        judged = self.read_bibs + self.misreads
        return self.read_bibs / judged if judged else 1.0

    @property
    def strict_precision(self) -> float:
        return self.read_bibs / self.reported if self.reported else 1.0

    @property
    def linked_recall(self) -> float:
        return self.linked_bibs / self.labelled_bibs if self.labelled_bibs else 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "recall": round(self.recall, 4),
            "precision": round(self.precision, 4),
            "linked_recall": round(self.linked_recall, 4),
            "images_per_second": round(self.images_per_second, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "strict_precision": round(self.strict_precision, 4),
            "images": self.images,
            "labelled_bibs": self.labelled_bibs,
            "misreads": self.misreads,
            "unlabelled_reads": self.unlabelled,
        }

    def to_json(self) -> str:
        return json.dumps(self.summary(), sort_keys=True)

    def details_json(self) -> str:
        return json.dumps({**self.summary(), "results": [asdict(r) for r in self.results]})


def _pixel_box(raw: dict[str, float]) -> tuple[float, float, float, float]:
    return raw["left"], raw["top"], raw["left"] + raw["width"], raw["top"] + raw["height"]


def _normalized_to_pixels(box: dict[str, float], width: int, height: int
                          ) -> tuple[float, float, float, float]:
    left, top = box["Left"] * width, box["Top"] * height
    return left, top, left + box["Width"] * width, top + box["Height"] * height


def _intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return (max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))


def _area(box: tuple[float, ...]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


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


def number_key(number: str) -> str:
    """Leading zeros carry no meaning: bib ``0891`` is labelled ``891`` in RBNR."""
    return number.lstrip("0") or "0"


def judge_image(entry: dict[str, Any], bibs: list[dict[str, Any]],
                faces: list[dict[str, Any]], links: list[dict[str, Any]]) -> ImageResult:
    """Compare one photo's reported bibs and links with its labels."""
    width, height = int(entry["width"]), int(entry["height"])
    labelled = {str(bib["number"]): bib for bib in entry["bibs"]}
    label_of = {number_key(number): number for number in labelled}
    reported = {bib["number"]: bib for bib in bibs}
    face_of_bib = {number_key(link["bib"]["number"]): link["face_index"] for link in links}
    read = sorted(label_of[number_key(number)] for number in reported
                  if number_key(number) in label_of)
    linked = []
    for number in read:
        face_index = face_of_bib.get(number_key(number))
        label_face = labelled[number].get("face_box")
        if face_index is None or not label_face:
            continue
        face_box = _normalized_to_pixels(faces[face_index]["box"], width, height)
        if _iou(face_box, _pixel_box(label_face)) >= SAME_FACE_IOU:
            linked.append(number)
    misread: list[str] = []
    unlabelled: list[str] = []
    for number, bib in reported.items():
        if number_key(number) in label_of:
            continue
        box = _normalized_to_pixels(bib["box"], width, height)
        on_label = any(
            _intersection(box, _pixel_box(label["bib_box"])) >= ON_LABELLED_BIB * _area(box)
            for label in labelled.values())
        (misread if on_label else unlabelled).append(number)
    return ImageResult(entry["file"], sorted(labelled), read, linked, sorted(misread),
                       sorted(unlabelled))


def evaluate_rbnr(folder: Path, *, limit: int | None = None,
                  settings: Settings | None = None) -> EvaluationReport:
    """Run the offline pipeline over FOLDER's labelled photos and score it."""
    from racecheck.detectors.local import LocalRekognition

    folder = Path(folder)
    entries = load_ground_truth(folder)
    if limit is not None:
        entries = entries[:limit]
    settings = settings or Settings.from_cdk_json()
    detector = LocalRekognition()
    results = []
    started = time.perf_counter()
    for entry in entries:
        image_bytes = (folder / entry["file"]).read_bytes()
        reading = extract_bibs(detector.detect_text(image_bytes), settings)
        faces = faces_from_rekognition(detector.detect_faces(image_bytes, FACE_ATTRIBUTES))
        links = link_bibs_to_faces(reading.bibs, faces, image_width=int(entry["width"]),
                                   image_height=int(entry["height"]))
        results.append(judge_image(entry, reading.bibs, faces, links))
    seconds = time.perf_counter() - started
    return EvaluationReport(
        folder=str(folder),
        images=len(results),
        labelled_bibs=sum(len(result.labelled) for result in results),
        read_bibs=sum(len(result.read) for result in results),
        linked_bibs=sum(len(result.linked) for result in results),
        reported=sum(len(result.read) + len(result.misread) + len(result.unlabelled)
                     for result in results),
        misreads=sum(len(result.misread) for result in results),
        unlabelled=sum(len(result.unlabelled) for result in results),
        seconds=seconds,
        peak_rss_mb=_peak_rss_mb(),
        results=results,
    )


def format_report(report: EvaluationReport) -> str:
    """Human-readable figures, then the photos where something was missed or misread."""
    lines = [
        f"RBNR evaluation of {report.folder}: {report.images} photos, "
        f"{report.labelled_bibs} labelled bibs",
        f"  bib recall          {report.recall:7.1%}  ({report.read_bibs} read exactly)",
        f"  bib precision       {report.precision:7.1%}  ({report.misreads} misread on "
        f"labelled bibs)",
        f"  strict precision    {report.strict_precision:7.1%}  (also counting "
        f"{report.unlabelled} reads off the labelled bibs: other runners or false reads)",
        f"  linked recall       {report.linked_recall:7.1%}  ({report.linked_bibs} read and "
        f"linked to the labelled face)",
        f"  speed               {report.images_per_second:7.2f} photos/s (one process, "
        f"models loaded in the run)",
        f"  peak memory         {report.peak_rss_mb:7.0f} MB RSS",
    ]
    problems = [result for result in report.results
                if set(result.labelled) - set(result.read) or result.misread
                or result.unlabelled]
    if problems:
        lines.append("Photos to look at (missed / misread / unlabelled reads):")
        for result in problems:
            missed = sorted(set(result.labelled) - set(result.read))
            lines.append(f"  {result.file}: missed {missed or '-'}, misread "
                         f"{result.misread or '-'}, unlabelled {result.unlabelled or '-'}")
    return "\n".join(lines)
