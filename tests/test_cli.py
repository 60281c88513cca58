"""The command line, through click's CliRunner."""

from __future__ import annotations

import csv
import gc
import io
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from racecheck.cli import entry, main
from racecheck.core.registry import Runner
from racecheck.local.runners_file import registered_runners
from tests.conftest import camera_exif, load_fixture, make_jpeg


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



def test_the_console_script_runs_the_cli_and_leaves_its_heap_frozen_for_the_exit(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # given the installed script and the function it calls
    script = Path(sys.executable).with_name("racecheck")
    installed_as = [point.value for point in entry_points(group="console_scripts")
                    if point.name == "racecheck"]
    # when each runs a command
    installed = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                               check=False)
    monkeypatch.setattr(sys, "argv", ["racecheck", "--version"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit) as exit_status:
            entry()
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    # then both answer as the CLI does, and the objects left are out of the last collection
    assert installed_as == ["racecheck.cli:entry"]
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("racecheck, version ")
    assert exit_status.value.code == 0
    assert capsys.readouterr().out == installed.stdout
    assert frozen > 0


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


# ------------------------------------------------------------------------------ timing

CHECKPOINTS_CSV = "checkpoint,km\nstart,0\n10k,10\nhalf,21.1\n30k,30\nfinish,42.195\n"
# Bibs 1203 and 4410 cross every mat within tenths (one carrier); 3631 runs alone.
SPLITS_CSV = """bib,checkpoint,time
1203,start,2026-04-19T09:01:10.2+02:00
4410,start,2026-04-19T09:01:10.4+02:00
1203,10k,2026-04-19T09:50:02.0+02:00
4410,10k,2026-04-19T09:50:02.9+02:00
1203,half,2026-04-19T10:45:40.1+02:00
4410,half,2026-04-19T10:45:40.6+02:00
1203,30k,2026-04-19T11:30:00.0+02:00
1203,finish,2026-04-19T12:32:00.0+02:00
4410,finish,2026-04-19T12:32:00.2+02:00
3631,start,2026-04-19T09:02:00.0+02:00
3631,10k,2026-04-19T09:52:00.0+02:00
3631,half,2026-04-19T10:47:30.0+02:00
3631,30k,2026-04-19T11:32:00.0+02:00
3631,finish,2026-04-19T12:32:58.5+02:00
"""


def write_timing(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "splits.csv").write_text(SPLITS_CSV, encoding="utf-8")
    (folder / "checkpoints.csv").write_text(CHECKPOINTS_CSV, encoding="utf-8")
    return folder / "splits.csv", folder / "checkpoints.csv"


def test_timing_check_prints_the_mule_groups_as_one_json_object(tmp_path: Path) -> None:
    splits, checkpoints = write_timing(tmp_path)
    result = CliRunner().invoke(main, ["timing", "check", str(splits), "--checkpoints",
                                       str(checkpoints), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["mule_groups"] == [{"bibs": ["1203", "4410"], "checkpoints": 4,
                                      "max_gap_s": 0.9}]
    assert (report["runners"], report["splits"], report["tolerance_s"]) == (3, 14, 1.1)
    assert report["course"][3] == {"checkpoint": "30k", "km": 30.0, "reads": 2}


def test_timing_check_as_csv_and_table(tmp_path: Path) -> None:
    splits, checkpoints = write_timing(tmp_path)
    as_csv = CliRunner().invoke(main, ["timing", "check", str(splits), "--checkpoints",
                                       str(checkpoints), "--format", "csv"])
    assert as_csv.output.splitlines() == ["bibs,checkpoints,max_gap_s", "1203 4410,4,0.9"]
    table = CliRunner().invoke(main, ["timing", "check", str(splits), "--checkpoints",
                                      str(checkpoints)])
    assert "3 runner(s), 14 split(s); 1 group(s) crossing every shared mat within 1.1 s" in (
        table.output)


def test_bad_splits_are_reported_with_line_numbers(tmp_path: Path) -> None:
    splits, checkpoints = write_timing(tmp_path)
    splits.write_text("bib,checkpoint,time\n1,start,09:00:00\n2,25k,09:00:00\n")
    result = CliRunner().invoke(main, ["timing", "check", str(splits), "--checkpoints",
                                       str(checkpoints), "--race-date", "2026-04-19",
                                       "--timezone", "Europe/Berlin"])
    assert result.exit_code == 1
    assert "1 problem(s) in the splits file" in result.output
    assert "line 3: checkpoint '25k' is not in the checkpoints file" in result.output


def test_a_bad_time_zone_is_a_usage_error(tmp_path: Path) -> None:
    splits, checkpoints = write_timing(tmp_path)
    result = CliRunner().invoke(main, ["timing", "check", str(splits), "--checkpoints",
                                       str(checkpoints), "--timezone", "Mars/Olympus"])
    assert result.exit_code == 2
    assert "--timezone" in result.output


@pytest.mark.parametrize("options", [["--timing", "splits.csv"],
                                     ["--checkpoints", "checkpoints.csv"],
                                     ["--photo-points", "points.json"]])
def test_timing_options_that_need_each_other_are_usage_errors(
        tmp_path: Path, options: list[str]) -> None:
    write_timing(tmp_path)
    (tmp_path / "points.json").write_text('{"utc_offset": "+02:00", "points": []}')
    (tmp_path / "a.jpg").write_bytes(make_jpeg())
    arguments = [str(tmp_path / option) if option.endswith((".csv", ".json")) else option
                 for option in options]
    result = CliRunner().invoke(main, ["run", str(tmp_path / "a.jpg"), *arguments])
    assert result.exit_code == 2, result.output


def canned_rekognition(operation: str, image: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """Every photo shows bib 3631 on a clear male face aged 29-45."""
    return load_fixture("rekognition/" + {
        "DetectModerationLabels": "detect_moderation_clean",
        "DetectText": "detect_text_bib_3631",
        "DetectFaces": "detect_faces_male_29_45"}[operation] + ".json")


def test_a_local_run_with_timing_finds_photos_off_the_chip_and_the_mules(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given three photos of bib 3631 (a registered man whose face fits): at km 25 when his
    # chip passed there (11:07:00 between the half and 30k reads), at km 25 fifteen
    # minutes early, at the finish fifteen minutes early; the cameras write local time
    # without an offset
    photos = tmp_path / "photos"
    (photos / "km25").mkdir(parents=True)
    (photos / "finish").mkdir()
    (photos / "km25" / "on time.jpg").write_bytes(
        make_jpeg(exif=camera_exif("2026:04:19 11:07:10")))
    (photos / "km25" / "early.jpg").write_bytes(
        make_jpeg(exif=camera_exif("2026:04:19 10:52:00")))
    (photos / "finish" / "early.jpg").write_bytes(
        make_jpeg(exif=camera_exif("2026:04:19 12:17:58", sub_seconds="5")))
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category,name\n3631,M,18-39,Tom\n", encoding="utf-8")
    splits, checkpoints = write_timing(tmp_path / "timing")
    points = tmp_path / "photo_points.json"
    points.write_text(json.dumps({"utc_offset": "+02:00", "points": [
        {"prefix": "km25/", "km": 25}, {"prefix": "finish/", "km": 42.195}]}))
    monkeypatch.setattr("racecheck.local.backends.make_backend",
                        lambda detector, *, jobs: canned_rekognition)
    out = tmp_path / "out"
    # when run locally with the timing data
    result = CliRunner().invoke(main, [
        "run", str(photos), "--runners", str(runners), "--timing", str(splits),
        "--checkpoints", str(checkpoints), "--photo-points", str(points), "--out", str(out),
        "--jobs", "1"])
    # then the photo on time passes and the two early ones go to review
    assert result.exit_code == 0, result.output
    lines = {line["key"]: line for line in map(
        json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())}
    assert {key: (line["verdict"], line["reasons"]) for key, line in lines.items()} == {
        "km25/on time.jpg": ("PASS", []),
        "km25/early.jpg": ("REVIEW", ["TIMING_MISMATCH"]),
        "finish/early.jpg": ("REVIEW", ["TIMING_MISMATCH"]),
    }
    assert lines["finish/early.jpg"]["image"]["taken_at"] == "2026-04-19T12:17:58.500"
    assert lines["km25/early.jpg"]["links"][0]["timing"]["difference_s"] == -900.0
    assert lines["finish/early.jpg"]["links"][0]["timing"]["difference_s"] == -900.0
    # and the chip mules of the splits are listed
    assert json.loads((out / "mule_groups.json").read_text(encoding="utf-8")) == [
        {"bibs": ["1203", "4410"], "checkpoints": 4, "max_gap_s": 0.9}]
    assert "Chip mule groups (bibs crossing every mat together): 1" in result.output


def test_runners_check_counts_each_gender(tmp_path: Path) -> None:
    runners = tmp_path / "runners.csv"
    runners.write_text("bib,gender,age_category\n1,M,18-39\n2,non-binary,18-39\n3,F,18-39\n"
                       "4,X,70+\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["runners", "check", str(runners)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{runners}: 4 runner(s), all rows valid (M 1, F 1, X 2)"


def local_import(out: Path, rows: str, *options: str, name: str = "runners.csv") -> Any:
    path = out.parent / name
    path.write_text("bib,gender,age_category,name\n" + rows, encoding="utf-8")
    return CliRunner().invoke(main, ["runners", "import", str(path), "--local", str(out),
                                     *options])


def test_local_import_prune_and_history_keep_the_state_in_the_output_folder(
        tmp_path: Path) -> None:
    # given a first list imported into a local run folder
    out = tmp_path / "checked"
    first = local_import(out, "3631,F,18-39,Ana\n77,M,70+,Bo\n", name="v1.csv")
    assert first.exit_code == 0, first.output
    state_after_first = (out / "runners.jsonl").read_text(encoding="utf-8")
    # when a second list hands 3631 to Cy and drops Bo: a dry run, then the real prune
    dry = local_import(out, "3631,M,40-44,Cy\n", "--prune", "--dry-run", name="v2.csv")
    state_after_dry_run = (out / "runners.jsonl").read_text(encoding="utf-8")
    done = local_import(out, "3631,M,40-44,Cy\n", "--prune", "--yes", name="v2.csv")
    # then the dry run printed the removal and left the state alone; the prune applied it
    assert "remove bib 77: M 70+ Bo" in dry.output and "Dry run" in dry.output
    assert state_after_dry_run == state_after_first
    assert done.exit_code == 0, done.output
    assert registered_runners(out) == [Runner("3631", "M", 40, 44, "40-44", "Cy")]
    # and the history answers from the folder, oldest first (bibs in number order)
    history = CliRunner().invoke(main, ["runners", "history", "--local", str(out), "--all",
                                        "--format", "csv"])
    assert history.exit_code == 0, history.output
    rows = [(row["bib"], row["change"], row["source"])
            for row in csv.DictReader(io.StringIO(history.output))]
    assert rows == [("77", "added", "v1.csv"), ("3631", "added", "v1.csv"),
                    ("77", "removed", "v2.csv"), ("3631", "updated", "v2.csv")]


def test_a_local_run_uses_the_registrations_imported_into_its_folder(tmp_path: Path) -> None:
    # given registrations imported into the folder a run writes to
    out = tmp_path / "checked"
    assert local_import(out, "3631,X,18-39,Sam\n4242,F,18-39,Ana\n").exit_code == 0
    photo = tmp_path / "a.jpg"
    photo.write_bytes(make_jpeg())
    # when a run writes there without --runners
    result = CliRunner().invoke(main, ["run", str(photo), "--out", str(out), "--jobs", "1"])
    # then it says it checks against them
    assert result.exit_code == 0, result.output
    assert f"Using the 2 runner(s) registered in {out / 'runners.jsonl'}" in result.output


def test_a_corrupt_local_registration_file_is_one_clear_line(tmp_path: Path) -> None:
    out = tmp_path / "checked"
    out.mkdir()
    (out / "runners.jsonl").write_text('{"bib": "1", "gender": "M"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["runners", "history", "--local", str(out)])
    assert result.exit_code == 1
    assert result.output.startswith(f"racecheck: {out / 'runners.jsonl'} line 1:")
