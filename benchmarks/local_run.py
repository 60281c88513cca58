"""Throughput of `racecheck run` on the RBNR photos: jobs 1 vs 2, orchestration overhead, memory.

Usage: .venv/bin/python benchmarks/local_run.py [RBNR_DIR] [--limit N]

Prints, for the same photos in the same run:
- photos/second with --jobs 1 and --jobs 2 (offline detectors), and their ratio;
- orchestration overhead per execution: wall time of an execution minus the time spent in
  handlers and detectors (moto's interpreter, the emulated DynamoDB/SNS/S3 calls);
- the same overhead with an instant canned detector, as the baseline of pure orchestration;
- peak resident memory of this process and of the detector worker processes.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))

from racecheck.core.settings import Settings  # noqa: E402
from racecheck.local.backends import LocalDetectorBackend  # noqa: E402
from racecheck.local.runner import InputPhoto, RunSummary, run_photos  # noqa: E402

CANNED = REPOSITORY_ROOT / "tests" / "fixtures" / "rekognition"


def canned_backend(operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
    name = {"DetectText": "detect_text_bib_3631", "DetectFaces": "detect_faces_male_29_45",
            "DetectModerationLabels": "detect_moderation_clean"}[operation]
    response: dict[str, Any] = json.loads((CANNED / f"{name}.json").read_text())
    return response


def photos_of(rbnr: Path, limit: int | None) -> list[InputPhoto]:
    photos = []
    for folder in ("set1", "set2"):
        entries = json.loads((rbnr / folder / "ground_truth.json").read_text())
        photos += [InputPhoto(path=rbnr / folder / entry["file"], key=f"{folder}/{entry['file']}")
                   for entry in entries]
    return photos[:limit] if limit else photos


def timed_run(photos: list[InputPhoto], backend: Any, *, in_flight: int) -> RunSummary:
    settings = Settings.from_cdk_json()
    out_dir = Path(tempfile.mkdtemp(prefix="racecheck-bench-"))
    try:
        return run_photos(inputs=[], photos=photos, out_dir=out_dir, settings=settings,
                          backend=backend, in_flight=in_flight)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rbnr", nargs="?", type=Path,
                        default=REPOSITORY_ROOT.parent / "shared" / "datasets" / "rbnr")
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    if not (arguments.rbnr / "set1" / "ground_truth.json").is_file():
        sys.exit(f"RBNR dataset not found at {arguments.rbnr}")
    photos = photos_of(arguments.rbnr, arguments.limit)
    print(f"{len(photos)} RBNR photos")

    baseline = timed_run(photos, canned_backend, in_flight=2)
    print(f"canned detector (orchestration baseline): {baseline.photos_per_second:6.2f} photos/s,"
          f" orchestration {baseline.orchestration_seconds_per_photo * 1000:6.1f} ms/execution")

    results = {}
    for jobs in (1, 2):
        backend = LocalDetectorBackend(jobs=jobs)
        try:
            timed_run(photos[:2], backend, in_flight=jobs * 2)  # load the models once
            summary = timed_run(photos, backend, in_flight=jobs * 2)
        finally:
            backend.close()
        results[jobs] = summary
        print(f"local detectors, --jobs {jobs}: {summary.photos_per_second:6.2f} photos/s, "
              f"orchestration {summary.orchestration_seconds_per_photo * 1000:6.1f} ms/execution,"
              f" verdicts {dict(summary.verdicts)}")
    print(f"speed-up --jobs 2 vs --jobs 1: "
          f"{results[2].photos_per_second / results[1].photos_per_second:.2f}x")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: runner process {own:.0f} MB, largest detector worker {workers:.0f} MB")


if __name__ == "__main__":
    main()
