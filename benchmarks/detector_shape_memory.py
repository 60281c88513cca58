"""The text detector's memory as a race's photos bring new input shapes, cache bounded or not.

Usage: .venv/bin/python benchmarks/detector_shape_memory.py [--photos 150] [--crops 3]

Each simulated photo runs PP-OCRv4's text detector (OpenVINO, one thread, as a worker of
`racecheck run` does) once at a camera's whole-photo shape and then on a few torso crops,
whose sides are multiples of 32 from 160 to 544 px (a crop's size follows the runner's, so
a race brings many). Inputs are noise: the network's cost does not depend on the pixels.
The same sequence runs in a fresh process per setting: OpenVINO's default kernel cache
(5,000 entries) and racecheck's bound (``engines.RUNTIME_CACHE_ENTRIES``). Prints the
resident memory as the photos go by, the distinct shapes seen, CPU per photo, and the
ratios bounded / default.
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

OPENVINO_DEFAULT_ENTRIES = 5000
LANDSCAPE, PORTRAIT = (736, 1088), (1088, 736)  # whole-photo detector inputs, sides / 32
PORTRAIT_EVERY = 7  # photos


def _memory_mb() -> dict[str, int]:
    """This process's resident and peak resident memory."""
    status = _status_kb(os.getpid(), "VmRSS", "VmHWM")
    return {name: kb // 1024 for name, kb in status.items()}


def one_setting(entries: int, photos: int, crops: int) -> dict[str, Any]:
    import numpy as np

    os.environ["RACECHECK_DETECTOR_THREADS"] = "1"
    from racecheck.detectors import engines

    engines.RUNTIME_CACHE_ENTRIES = entries
    detect = engines.text_networks().detect
    loaded = _memory_mb()["VmRSS"]
    generator = np.random.default_rng(0)
    shapes: set[tuple[int, int]] = set()
    resident: list[int] = []
    started = time.process_time()
    for photo in range(photos):
        whole = PORTRAIT if photo % PORTRAIT_EVERY == 0 else LANDSCAPE
        torsos = [(int(h) * 32, int(w) * 32) for h, w in generator.integers(5, 18, (crops, 2))]
        for height, width in [whole, *torsos]:
            shapes.add((height, width))
            detect(generator.random((1, 3, height, width), dtype=np.float32))
        if (photo + 1) % 25 == 0:
            resident.append(_memory_mb()["VmRSS"])
    cpu = time.process_time() - started
    return {"entries": entries, "loaded_mb": loaded, "resident_mb_every_25_photos": resident,
            "peak_mb": _memory_mb()["VmHWM"],
            "distinct_shapes": len(shapes), "cpu_ms_per_photo": round(cpu * 1000 / photos)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=150)
    parser.add_argument("--crops", type=int, default=3, help="torso crops read per photo")
    parser.add_argument("--entries", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.entries is not None:
        print(json.dumps(one_setting(arguments.entries, arguments.photos, arguments.crops)))
        return
    from racecheck.detectors.engines import RUNTIME_CACHE_ENTRIES

    results = {}
    for label, entries in (("openvino default", OPENVINO_DEFAULT_ENTRIES),
                           ("racecheck bound", RUNTIME_CACHE_ENTRIES)):
        output = subprocess.run(
            [sys.executable, __file__, "--entries", str(entries), "--photos",
             str(arguments.photos), "--crops", str(arguments.crops)],
            check=True, capture_output=True, text=True).stdout
        results[label] = json.loads(output.strip().splitlines()[-1])
        print(f"{label} ({entries} entries): {results[label]}", flush=True)
    default, bounded = results["openvino default"], results["racecheck bound"]
    print(f"peak memory bounded / default: {bounded['peak_mb'] / default['peak_mb']:.2f} "
          f"({bounded['peak_mb']} / {default['peak_mb']} MB); growth after loading "
          f"{bounded['peak_mb'] - bounded['loaded_mb']} / "
          f"{default['peak_mb'] - default['loaded_mb']} MB; CPU per photo "
          f"{bounded['cpu_ms_per_photo'] / default['cpu_ms_per_photo']:.2f}")


if __name__ == "__main__":
    main()
