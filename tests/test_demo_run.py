"""The README's first command, end to end: `racecheck demo` with the offline detectors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from racecheck.cli import main

if importlib.util.find_spec("skimage") is None:
    pytest.skip("demo sample photos need scikit-image (make setup)", allow_module_level=True)


def test_the_demo_finds_the_swap_and_reports_one_suspect(tmp_path: Path) -> None:
    # when the demo runs from nothing but the repository and the pinned packages
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--jobs", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in
             (tmp_path / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    verdicts = {line["key"]: line for line in lines}
    # then every input file has exactly one verdict
    photos = [p for p in (tmp_path / "input" / "photos").rglob("*") if p.is_file()]
    assert sorted(verdicts) == sorted(
        p.relative_to(tmp_path / "input" / "photos").as_posix() for p in photos)
    # and the registered runner passes, the swap is caught, the bandit is reviewed
    assert verdicts["01 registered runner.jpg"]["verdict"] == "PASS"
    for swap in ("02 bib swap.jpg", "06 bib swap, km 30.jpg"):
        assert verdicts[swap]["verdict"] in ("FAIL", "REVIEW")
        assert "GENDER_MISMATCH" in verdicts[swap]["reasons"]
    assert verdicts["03 unregistered bib.jpg"]["reasons"] == ["BIB_UNREGISTERED"]
    assert verdicts["05 truncated upload.jpg"]["reasons"] == ["CORRUPT_IMAGE"]
    assert verdicts["notes.txt"]["reasons"] == ["NOT_AN_IMAGE"]
    # and the runner of bib 5078 is reported once as a suspect, with both photos
    suspects = json.loads((tmp_path / "suspects.json").read_text(encoding="utf-8"))
    assert [suspect["bib"] for suspect in suspects] == ["5078"]
    alerts = [json.loads(line) for line in
              (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    suspect_alerts = [a for a in alerts if a["attributes"]["alert_type"] == "SUSPECT"]
    assert len(suspect_alerts) == 1
    assert "06 bib swap, km 30.jpg" in suspect_alerts[0]["message"]
    # and the summary points to the review page
    assert f"Review page: {tmp_path / 'review.html'}" in result.output
    assert "sample photographs shipped inside pinned Python packages" in result.output
