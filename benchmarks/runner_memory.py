"""Peak memory of `racecheck run`'s process as the folder grows (canned detector).

Usage: .venv/bin/python benchmarks/runner_memory.py [--photos 100 200] [--in-flight 4]

Writes N photos of about 2.6 MB each (JPEGs of noise, 2000x1500: no real detector is
run, so their content does not matter; only their bytes do), checks them with
``run_photos`` and an instant canned detector, and prints the process's peak RSS after
each run, in a fresh process per size. Photos stay in the emulated bucket only while in
flight, so the peak should not grow with the folder.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from local_run import canned_detector

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY_ROOT))


def one_size(photos: int, in_flight: int) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from racecheck.core.settings import Settings
    from racecheck.local.runner import run_photos

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work) / "photos"
        folder.mkdir()
        generator = np.random.default_rng(0)
        for index in range(photos):
            pixels = generator.integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
            (folder / f"{index}.jpg").write_bytes(buffer.getvalue())
        folder_mb = sum(path.stat().st_size for path in folder.iterdir()) / 2**20
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        summary = run_photos(inputs=[folder], out_dir=Path(work) / "out",
                             settings=Settings.from_cdk_json(),
                             backend=canned_detector(text="detect_text_nothing",
                                                     faces="detect_faces_none"),
                             in_flight=in_flight)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"photos": photos, "folder_mb": round(folder_mb), "verdicts": dict(summary.verdicts),
            "peak_rss_mb_before_run": round(before), "peak_rss_mb": round(after)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: one size
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(one_size(arguments.one, arguments.in_flight)))
        return
    for photos in arguments.photos:
        child = subprocess.run([sys.executable, __file__, "--one", str(photos),
                                "--in-flight", str(arguments.in_flight)],
                               capture_output=True, text=True, check=True)
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{figures['photos']} photos ({figures['folder_mb']} MB): peak RSS "
              f"{figures['peak_rss_mb']} MB (before the run {figures['peak_rss_mb_before_run']}"
              f" MB), verdicts {figures['verdicts']}")


if __name__ == "__main__":
    main()
