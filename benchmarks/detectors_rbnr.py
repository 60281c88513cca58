"""Bib reading figures of the offline detectors on RBNR sets 1 and 2.

Prints, per set: recall, precision (reads on labelled bibs), strict precision (every read,
judged against RBNR's labels and the legible bibs they left out), with the counts behind
each, linked recall, photos per second with one process and with two worker processes (one
ONNX thread each), and peak RSS.

    .venv/bin/python benchmarks/detectors_rbnr.py [SET ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

RBNR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "rbnr"


def _one_photo(path: str) -> int:
    from racecheck.core.bibs import extract_bibs
    from racecheck.core.faces import FACE_ATTRIBUTES
    from racecheck.core.settings import Settings
    from racecheck.local.backends import _detector

    image = Path(path).read_bytes()
    detector = _detector()
    reading = extract_bibs(detector.detect_text(image), Settings.from_cdk_json())
    detector.detect_faces(image, FACE_ATTRIBUTES)
    return len(reading.bibs)


def _warm(_: int) -> int:
    from racecheck.local.backends import _detector

    _detector()
    return os.getpid()


def two_process_rate(folder: Path) -> float:
    """Photos per second through a pool of two workers, models loaded before timing."""
    os.environ["RACECHECK_DETECTOR_THREADS"] = "1"
    paths = sorted(str(path) for path in folder.iterdir() if path.suffix.lower() == ".jpg")
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_warm, range(2)))
        list(pool.map(_one_photo, paths[:2]))
        started = time.perf_counter()
        list(pool.map(_one_photo, paths))
        return len(paths) / (time.perf_counter() - started)


def one_process_figures(set_name: str) -> dict[str, float]:
    # A fresh interpreter per set, so that peak RSS is that set's alone.
    code = ("import sys; from pathlib import Path; from racecheck.evaluation import "
            "evaluate_rbnr; print(evaluate_rbnr(Path(sys.argv[1])).to_json())")
    output = subprocess.run([sys.executable, "-c", code, str(RBNR / set_name)],
                            check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return figures


def main(sets: list[str]) -> int:
    if not RBNR.is_dir():
        print(f"RBNR dataset absent at {RBNR}")
        return 1
    for set_name in sets:
        figures = one_process_figures(set_name)
        rate_two = two_process_rate(RBNR / set_name)
        labelled_reads = figures["right_on_labelled"] + figures["misreads_on_labelled"]
        print(f"{set_name}: recall {figures['recall']:.1%} ({figures['read_bibs']}/"
              f"{figures['labelled_bibs']}), precision {figures['precision']:.1%} "
              f"({figures['right_on_labelled']}/{labelled_reads}), strict precision "
              f"{figures['strict_precision']:.1%} ({figures['right_reads']}/{figures['reads']}: "
              f"{figures['misreads']} misread, {figures['off_bib_reads']} on no known bib), "
              f"linked recall {figures['linked_recall']:.1%}, "
              f"{figures['images_per_second']:.2f} photos/s "
              f"in 1 process (model loading included), {rate_two:.2f} photos/s in 2 "
              f"processes, peak RSS {figures['peak_rss_mb']:.0f} MB (1 process)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["set1", "set2"]))
