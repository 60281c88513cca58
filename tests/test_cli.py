"""The command line, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from racecheck.cli import main
from tests.conftest import make_jpeg


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found += all_commands(command, path)
    return found


@pytest.mark.parametrize("command", all_commands(main), ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    leaf: click.Command = main
    for name in command:
        assert isinstance(leaf, click.Group)
        leaf = leaf.commands[name]
    if not isinstance(leaf, click.Group):
        assert "Example:" in result.output


@pytest.mark.parametrize("arguments", [
    ["run", "no/such/folder"],
    ["run", ".", "--jobs", "0"],
    ["run", ".", "--detector", "magic"],
    ["run", ".", "--runners", "no-such-runners.csv"],
    ["run"],
    ["photos"],
])
def test_bad_arguments_are_usage_errors(arguments: list[str]) -> None:
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2, result.output


def test_an_empty_folder_is_explained_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"racecheck: no files to check in {tmp_path}"]


def test_a_bad_runners_file_is_reported_with_line_numbers(tmp_path: Path) -> None:
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category\n1,M,18-39\n2,Q,18-39\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["runners", "check", str(runners)])
    assert result.exit_code == 1
    assert "line 3" in result.output


def test_a_folder_with_one_good_and_one_corrupt_photo_gets_two_verdicts(tmp_path: Path) -> None:
    # given a folder with a photo, a corrupt JPEG and a stray text file
    photos = tmp_path / "photos"
    (photos / "finish line").mkdir(parents=True)
    (photos / "finish line" / "good photo.jpg").write_bytes(make_jpeg(800, 600))
    (photos / "broken+1.jpg").write_bytes(make_jpeg(800, 600)[:2000])
    (photos / "notes.txt").write_text("not a photo", encoding="utf-8")
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category\n3631,F,18-39\n", encoding="utf-8")
    out = tmp_path / "out"
    # when run with the offline detectors
    result = CliRunner().invoke(main, ["run", str(photos), "--runners", str(runners),
                                       "--out", str(out), "--jobs", "1"])
    # then the run completes and every file has exactly one line
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    verdicts = {line["key"]: (line["verdict"], line["reasons"]) for line in lines}
    assert verdicts == {
        "finish line/good photo.jpg": ("PASS", ["NO_BIB"]),
        "broken+1.jpg": ("REJECTED", ["CORRUPT_IMAGE"]),
        "notes.txt": ("REJECTED", ["NOT_AN_IMAGE"]),
    }
    assert "Checked 3 photo(s)" in result.output
    assert (out / "review.html").is_file()
    # and the local store answers searches
    found = CliRunner().invoke(main, ["suspects", "--local", str(out), "--format", "json"])
    assert found.exit_code == 0 and json.loads(found.output) == []


def test_photos_of_a_bib_from_a_local_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lines = [
        {"key": "a.jpg", "verdict": "PASS", "reasons": [], "recorded_at": "2026-01-01T10:00Z",
         "links": [{"bib": "3631", "outcome": "consistent"}]},
        {"key": "b.jpg", "verdict": "REVIEW", "reasons": ["BIB_UNREGISTERED"],
         "recorded_at": "2026-01-01T09:00Z", "links": [{"bib": "77", "outcome": "unknown"}]},
    ]
    (out / "results.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    result = CliRunner().invoke(main, ["photos", "--bib", "3631", "--local", str(out),
                                       "--format", "csv"])
    assert result.exit_code == 0
    assert result.output.splitlines() == ["key,verdict,outcome,reasons,recorded_at",
                                          "a.jpg,PASS,consistent,,2026-01-01T10:00Z"]


def test_the_rekognition_detector_without_credentials_is_explained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given no AWS credentials anywhere
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    (tmp_path / "a.jpg").write_bytes(make_jpeg())
    # when the real service is asked for
    result = CliRunner().invoke(main, ["run", str(tmp_path / "a.jpg"), "--detector",
                                       "rekognition", "--out", str(tmp_path / "out")])
    # then the run stops before anything starts, with one line saying what is missing
    assert result.exit_code == 1
    assert "needs AWS credentials" in result.output
    assert not (tmp_path / "out").exists()
