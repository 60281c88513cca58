"""Ctrl-C during `racecheck run`: complete lines for the photos done, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from racecheck.core.settings import Settings
from racecheck.local.runner import run_photos
from tests.conftest import load_fixture, make_jpeg


def canned(operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
    name = {"DetectText": "detect_text_nothing", "DetectFaces": "detect_faces_none",
            "DetectModerationLabels": "detect_moderation_clean"}[operation]
    return load_fixture(f"rekognition/{name}.json")


def test_an_interrupted_run_keeps_complete_lines_for_the_photos_done(
        tmp_path: Path, settings: Settings) -> None:
    # given eight photos, and Ctrl-C pressed as soon as the first result is in
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(8):
        (photos / f"{index}.jpg").write_bytes(make_jpeg(colour=f"#{index}{index}3366"))
    presses: list[str] = []

    def press_ctrl_c(line: dict[str, Any]) -> None:
        if not presses:
            presses.append(line["key"])
            raise KeyboardInterrupt

    # when the run is interrupted
    summary = run_photos(inputs=[photos], out_dir=tmp_path / "out", settings=settings,
                         backend=canned, in_flight=2, on_result=press_ctrl_c)
    # then it says so, stops early, and every line written is a whole, parseable result
    assert summary.interrupted
    lines = [json.loads(line) for line in
             (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert 1 <= len(lines) == summary.photos < 8
    assert all(line["verdict"] == "PASS" and line["reasons"] == ["NO_BIB"] for line in lines)
    assert presses[0] in {line["key"] for line in lines}
