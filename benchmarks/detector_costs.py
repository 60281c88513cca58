"""Where the offline detectors' CPU goes, per photo, in one process with one thread.

Usage: .venv/bin/python benchmarks/detector_costs.py [RBNR_DIR] [--sets set1] [--limit N]

Answers each photo's three calls as a `racecheck run` worker does (DetectText, DetectFaces
with every attribute, DetectModerationLabels) and prints the thread CPU time spent in each
stage, per photo: decoding, face finding, the whole-photo and torso text passes (each
with its detection and recognition), the numbers' second look and digit re-reads,
age/gender, landmarks and the explicit-content model. Stages nest (a pass contains its
detection and recognition), so the lines do not add up to the total. Model loading is
left out. With `--limit` only the first N photos of each set are read.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))


class StageClock:
    """Thread CPU time and calls per stage, from wrappers around the stages' functions."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, owner: Any, name: str, stage: str | None = None,
             by_source: bool = False) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            label = stage or name
            if by_source:
                label = f"{label} ({kwargs.get('source', '?')})"
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.thread_time() - started
                self.calls[label] += 1

        setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rbnr", nargs="?", type=Path,
                        default=REPOSITORY_ROOT.parent / "shared" / "datasets" / "rbnr")
    parser.add_argument("--sets", nargs="+", default=["set1"])
    parser.add_argument("--limit", type=int, default=None)
    arguments = parser.parse_args()
    if not arguments.rbnr.is_dir():
        sys.exit(f"{arguments.rbnr} not found: give the RBNR folder (../shared/datasets/rbnr)")

    # As in a `racecheck run` worker: one thread for every library.
    from racecheck.local.backends import load_models, prepare_detector_process

    prepare_detector_process()
    from racecheck.detectors import engines, face_finder, local, text_reader

    load_models()
    clock = StageClock()
    clock.wrap(local, "decode_image", "decode")
    clock.wrap(local, "find_faces", "find faces")
    clock.wrap(local, "read_text", "read text (every pass)")
    clock.wrap(text_reader, "_read_region", "text pass", by_source=True)
    clock.wrap(text_reader, "_detect_text_boxes", "  text detection")
    clock.wrap(text_reader, "recognise_lines", "  line recognition")
    clock.wrap(text_reader, "_second_look", "number: second look")
    clock.wrap(text_reader, "verify_number", "number: digit re-reads")
    clock.wrap(local, "estimate_faces", "age/gender + landmarks")
    clock.wrap(face_finder, "_landmarks", "  landmarks")
    clock.wrap(engines.nsfw_classifier(), "classify", "explicit-content model")

    detector = local.LocalRekognition()
    photos = []
    for set_name in arguments.sets:
        found = sorted(path for path in (arguments.rbnr / set_name).iterdir()
                       if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
        photos.extend(found[:arguments.limit] if arguments.limit else found)
    started = time.thread_time()
    for path in photos:
        image = path.read_bytes()
        detector.detect_text(image)
        detector.detect_faces(image, ["ALL"])
        detector.detect_moderation_labels(image, 50)
    total = time.thread_time() - started
    count = max(1, len(photos))
    print(f"{len(photos)} photos ({', '.join(arguments.sets)}), one thread: "
          f"{total * 1000 / count:,.0f} ms of CPU per photo; {os.cpu_count()} cores")
    for label, seconds in sorted(clock.seconds.items(), key=lambda item: -item[1]):
        print(f"  {label:32s} {seconds * 1000 / count:7.1f} ms per photo "
              f"({clock.calls[label]} calls)")


if __name__ == "__main__":
    main()
