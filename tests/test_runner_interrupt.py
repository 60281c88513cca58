"""Ctrl-C during `racecheck run`: complete lines for the photos done, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from racecheck.core.settings import Settings
from racecheck.local.runner import run_photos
from tests.conftest import no_bib_rekognition, write_jpegs


def test_an_interrupted_run_keeps_complete_lines_for_the_photos_done(
        tmp_path: Path, settings: Settings) -> None:
    # given eight photos, and Ctrl-C pressed as soon as the first result is in
    photos = write_jpegs(tmp_path / "photos", 8)
    presses: list[str] = []

    def press_ctrl_c(line: dict[str, Any]) -> None:
        if not presses:
            presses.append(line["key"])
            raise KeyboardInterrupt

    # when the run is interrupted
    summary = run_photos(inputs=[photos], out_dir=tmp_path / "out", settings=settings,
                         backend=no_bib_rekognition, in_flight=2, on_result=press_ctrl_c)
    # then it says so, stops early, and every line written is a whole, parseable result
    assert summary.interrupted
    lines = [json.loads(line) for line in
             (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert 1 <= len(lines) == summary.photos < 8
    assert all(line["verdict"] == "PASS" and line["reasons"] == ["NO_BIB"] for line in lines)
    assert presses[0] in {line["key"] for line in lines}
