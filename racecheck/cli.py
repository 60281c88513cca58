"""racecheck's command line: thin commands over the library."""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

import click

DEFAULT_OUT = Path("racecheck-out")
MULE_GROUPS_FILE = "mule_groups.json"
FORMATS = ("table", "json", "csv")


def fail(message: str) -> NoReturn:
    """An environment or input problem: one line on stderr, exit status 1."""
    click.echo(f"racecheck: {message}", err=True)
    sys.exit(1)


def _settings(overrides: dict[str, Any] | None = None) -> Any:
    from racecheck.core.settings import Settings, SettingsError

    try:
        return Settings.from_cdk_json(overrides=overrides)
    except (OSError, KeyError, SettingsError) as error:
        fail(f"cannot load settings from cdk.json: {error}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="racecheck")
def main() -> None:
    """Check race photos for bib swaps and bib mules, and find every photo of a bib.

    Locally (no AWS account): `racecheck demo`, `racecheck run PHOTOS`.
    On AWS: `cdk deploy`, then `racecheck runners import`, `racecheck photos`,
    `racecheck suspects`. Either way, `racecheck review` and `racecheck decide` let a
    person confirm or dismiss what was flagged.
    """


def entry() -> None:
    """The ``racecheck`` console script: the command, then an exit without a last sweep of
    the heap.

    At exit the interpreter's garbage collector walks every object still alive, and after
    `racecheck run` that is moto's emulated stack, the parsed state machine and botocore's
    service models, about 200,000 objects: 0.9 s of the user's wait after the summary was
    printed (RBNR set 1, this 2-core machine; 0.02 s frozen). Frozen objects are still
    freed as their modules are torn down; only cycles among them are left to the OS, which
    takes the whole process back a moment later.
    """
    try:
        main()
    finally:
        gc.freeze()


# ---------------------------------------------------------------------------- run / demo


def _print_summary(summary: Any, *, review_page: Path | None) -> None:
    from racecheck.local.rekognition import PRICE_PER_CALL_USD

    click.echo("")
    click.echo(f"Checked {summary.photos} photo(s) in {summary.seconds:.1f} s "
               f"({summary.photos_per_second:.2f} photos/s)"
               + ("  [interrupted: results kept for the photos done]"
                  if summary.interrupted else ""))
    rows = [(verdict, str(count)) for verdict, count in sorted(summary.verdicts.items())]
    click.echo(_table(["verdict", "photos"], rows))
    calls = ", ".join(f"{operation} {count}"
                      for operation, count in sorted(summary.rekognition_calls.items()))
    click.echo(f"Rekognition-equivalent calls: {calls or 'none'}; at list prices "
               f"(${PRICE_PER_CALL_USD['DetectText']:.3f} per image per API) that is "
               f"${summary.estimated_cost_usd:.4f}")
    click.echo(f"Alerts that would have been sent: {summary.alerts}")
    if summary.follow_up_failures:
        click.echo(f"Follow-ups set aside after every retry: {summary.follow_up_failures} "
                   "(index entries, evidence or alerts are missing for those photos)")
    if summary.suspects:
        click.echo("Suspects (runners whose photos repeatedly disagree with their registration):")
        for suspect in summary.suspects:
            click.echo(f"  bib {suspect['bib']}: {suspect.get('inconsistent', 0)} inconsistent, "
                       f"{suspect.get('consistent', 0)} consistent photo(s)")
    else:
        click.echo("Suspects: none")
    out_dir = summary.out_dir
    click.echo(f"Results: {out_dir / 'results.jsonl'}")
    if review_page:
        click.echo(f"Review page: {review_page}")


def _run(inputs: Sequence[Path], *, out_dir: Path, runners: Path | None, detector: str,
         jobs: int, timing: Any = None, photo_points: Any = None) -> tuple[Any, Path | None]:
    from racecheck.core.registry import RegistryError
    from racecheck.local.backends import BackendUnavailable, make_backend
    from racecheck.local.environment import LocalSetupError
    from racecheck.local.runner import collect_photos, run_photos

    photos = collect_photos(inputs)
    if not photos:
        fail("no files to check in " + ", ".join(str(path) for path in inputs))
    registered = [] if runners else _imported_runners(out_dir)
    settings = _settings()
    try:
        backend = make_backend(detector, jobs=jobs)
    except BackendUnavailable as error:
        fail(str(error))
    click.echo(f"Checking {len(photos)} file(s) with the {detector} detector "
               f"({jobs} job(s)); executing statemachine/photo_check.asl.json locally")
    try:
        with click.progressbar(length=len(photos), label="photos", file=sys.stderr,
                               show_pos=True) as bar:
            summary = run_photos(
                inputs=inputs, photos=photos, out_dir=out_dir, settings=settings,
                backend=backend, runners_csv=runners, registered=registered,
                in_flight=max(2, jobs * 2),
                passthrough_rekognition=detector == "rekognition",
                on_result=lambda _line: bar.update(1), timing=timing, photo_points=photo_points)
    except RegistryError as error:
        fail(f"runners file {runners}: {error}")
    except LocalSetupError as error:
        fail(str(error))
    finally:
        close = getattr(backend, "close", None)
        if close:
            close()
    review_page = _write_review(out_dir, inputs, suspects=summary.suspects)
    return summary, review_page


def _imported_runners(out_dir: Path) -> list[Any]:
    """The registrations `racecheck runners import --local OUT` keeps, if any."""
    from racecheck.local.runners_file import RunnersFileError, registered_runners, runners_path

    try:
        registered = registered_runners(out_dir)
    except RunnersFileError as error:
        fail(str(error))
    if registered:
        click.echo(f"Using the {len(registered)} runner(s) registered in "
                   f"{runners_path(out_dir)}")
    return registered


def _write_review(out_dir: Path, inputs: Sequence[Path], *,
                  suspects: Sequence[dict[str, Any]]) -> Path | None:
    from racecheck.review import write_review_page

    records = [json.loads(line) for line in
               (out_dir / "results.jsonl").read_text(encoding="utf-8").splitlines() if line]
    photos_root = inputs[0] if len(inputs) == 1 and inputs[0].is_dir() else (
        inputs[0].parent if inputs else Path("."))
    return Path(write_review_page(records, photos_root=photos_root, out_dir=out_dir,
                                  suspects=suspects))


@main.command()
@click.argument("photos", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--runners", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Registration CSV: bib,gender,age_category[,name,...] (default: "
                   "OUT/runners.jsonl, kept by `racecheck runners import --local OUT`).")
@click.option("--detector", type=click.Choice(["local", "rekognition"]), default="local",
              show_default=True,
              help="local: offline detectors; rekognition: the real API with your credentials.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_OUT, show_default=True,
              help="Folder for results and the review page.")
@click.option("--jobs", type=click.IntRange(1, 64), default=os.cpu_count() or 1,
              show_default="number of cores", help="Photos analysed in parallel.")
@click.option("--timing", "splits", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Splits CSV from the timing system: bib,checkpoint,time (needs --checkpoints).")
@click.option("--checkpoints", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The course's timing mats: checkpoint,km.")
@click.option("--photo-points", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON mapping key prefixes (folders) to course km, with camera clock "
                   "offsets: compares each photo with its bibs' chips (needs --timing).")
@click.option("--race-date", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Race day (YYYY-MM-DD), for splits given as times of day.")
@click.option("--timezone", "zone",
              help="Time zone of splits given as times of day: Europe/Berlin or +02:00.")
def run(photos: tuple[Path, ...], runners: Path | None, detector: str, out_dir: Path,
        jobs: int, splits: Path | None, checkpoints: Path | None, photo_points: Path | None,
        race_date: Any, zone: str | None) -> None:
    """Check photos locally by executing the deployed state machine definition.

    Every file gets exactly one verdict line in OUT/results.jsonl, whatever it contains.
    With --timing, OUT/mule_groups.json lists the bibs whose chips crossed every mat
    together, and with --photo-points each photo's bibs are compared with their chips.

    Example:

        racecheck run ~/race/photos --runners runners.csv --out checked

    \b
    With timing data:
        racecheck run ~/race/photos --runners runners.csv \\
          --timing splits.csv --checkpoints checkpoints.csv \\
          --photo-points photo_points.json
    """
    if (splits is None) != (checkpoints is None):
        raise click.UsageError("--timing and --checkpoints go together")
    if photo_points is not None and splits is None:
        raise click.UsageError("--photo-points needs --timing and --checkpoints")
    timing = (_parse_timing(splits, checkpoints, race_date, zone)
              if splits is not None and checkpoints is not None else None)
    points = _load_photo_points(photo_points) if photo_points is not None else None
    summary, review_page = _run(photos, out_dir=out_dir, runners=runners, detector=detector,
                                jobs=jobs, timing=timing, photo_points=points)
    _print_summary(summary, review_page=review_page)
    if timing is not None:
        from racecheck.core.mules import find_mule_groups

        groups = [group.to_dict() for group in find_mule_groups(timing)]
        path = out_dir / MULE_GROUPS_FILE
        path.write_text(json.dumps(groups, indent=2), encoding="utf-8")
        click.echo(f"Chip mule groups (bibs crossing every mat together): {len(groups)}, "
                   f"listed in {path}")


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo-out"), show_default=True, help="Folder for everything.")
@click.option("--jobs", type=click.IntRange(1, 64), default=os.cpu_count() or 1,
              show_default="number of cores", help="Photos analysed in parallel.")
def demo(out_dir: Path, jobs: int) -> None:
    """Build a small demo race (photos, registrations with a deliberate swap) and check it.

    Nothing is downloaded: the photos are sample photos that ship inside pinned packages,
    with race bibs rendered onto them.

    Example:

        racecheck demo --out demo-out
    """
    from racecheck.demo import build_demo_set

    demo_set = build_demo_set(out_dir / "input")
    click.echo(demo_set.description if hasattr(demo_set, "description") else "")
    summary, review_page = _run([demo_set.photos_dir], out_dir=out_dir,
                                runners=demo_set.runners_csv, detector="local", jobs=jobs)
    _print_summary(summary, review_page=review_page)


# ---------------------------------------------------------------------------- eval


@main.group(name="eval")
def eval_group() -> None:
    """Measure the offline detectors on labelled photos."""


@eval_group.command(name="rbnr")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--runners", "runners_csv",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Registration CSV: also decide every photo and print the review burden.")
@click.option("--json", "as_json", is_flag=True, help="End with one JSON object line.")
@click.option("--limit", type=click.IntRange(1), help="Only the first N images.")
def eval_rbnr(folder: Path, runners_csv: Path | None, as_json: bool, limit: int | None) -> None:
    """Bib recall/precision, linking and speed on an RBNR-format folder; with --runners,
    the review burden: the share of photos of correctly registered runners that come out
    REVIEW or FAIL, with the reasons counted.

    FOLDER holds the images and ground_truth.json. Reads are also judged against the
    legible bibs RBNR left unlabelled (benchmarks/data/rbnr_unlabelled_bibs.json) when
    that file lists FOLDER's name. benchmarks/rbnr_registrations.py writes registration
    lists for sets 1 and 2.

    Example:

        racecheck eval rbnr ../shared/datasets/rbnr/set1 --json \\
            --runners racecheck-out/registrations/set1_runners.csv
    """
    from racecheck.evaluation import evaluate_rbnr, format_report

    if not (folder / "ground_truth.json").is_file():
        fail(f"{folder} has no ground_truth.json")
    runners = None
    if runners_csv is not None:
        runners = {runner.bib: runner for runner in _parse_runners(runners_csv, None)}
    report = evaluate_rbnr(folder, limit=limit, settings=_settings(), runners=runners)
    click.echo(format_report(report))
    if as_json:
        click.echo(report.to_json())


# ---------------------------------------------------------------------------- AWS helpers


def _stack_outputs(stack_name: str) -> dict[str, str]:
    import boto3

    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as error:
        fail(f"cannot read the outputs of stack {stack_name}: {error}")
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def _table_name(explicit: str | None, stack_name: str, output_key: str) -> str:
    if explicit:
        return explicit
    outputs = _stack_outputs(stack_name)
    for key, value in outputs.items():
        if key.startswith(output_key):
            return value
    fail(f"stack {stack_name} has no output {output_key}; pass the table name explicitly")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, row)) for row in rows]
    widths = [max([len(header)] + [len(row[index]) for row in rows])
              for index, header in enumerate(headers)]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


def _emit(rows: list[dict[str, Any]], columns: Sequence[str], output_format: str) -> None:
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
    elif output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _cell(row.get(key)) for key in columns})
        click.echo(buffer.getvalue(), nl=False)
    else:
        click.echo(_table(columns, [[_cell(row.get(key)) for key in columns] for row in rows]))


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple | set):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


stack_option = click.option("--stack", "stack_name", default="Racecheck",
                            show_default=True, help="CloudFormation stack to read names from.")
format_option = click.option("--format", "output_format", type=click.Choice(FORMATS),
                             default="table", show_default=True)
local_option = click.option(
    "--local", "local_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Read a local run's output folder instead of AWS (e.g. racecheck-out).")


# ---------------------------------------------------------------------------- runners


@main.group()
def runners() -> None:
    """The registration list: check it, import it (AWS or --local), see its changes."""


def _parse_runners(path: Path, race_date: date | None) -> list[Any]:
    from racecheck.core.registry import RegistryError, parse_runners_csv

    try:
        return parse_runners_csv(path.read_text(encoding="utf-8-sig"), race_date=race_date)
    except RegistryError as error:
        fail(f"{path}: {error}")
    except UnicodeDecodeError as error:
        fail(f"{path} is not UTF-8 text: {error}")


race_date_option = click.option(
    "--race-date", type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Race day (YYYY-MM-DD), to turn birth dates into ages.")


@runners.command(name="check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@race_date_option
def runners_check(file: Path, race_date: Any) -> None:
    """Validate a registration CSV without importing it.

    Example:

        racecheck runners check runners.csv --race-date 2026-04-20
    """
    from collections import Counter

    parsed = _parse_runners(file, race_date.date() if race_date else None)
    genders = Counter(runner.gender for runner in parsed)
    by_gender = ", ".join(f"{gender} {genders[gender]}" for gender in "MFX" if genders[gender])
    click.echo(f"{file}: {len(parsed)} runner(s), all rows valid ({by_gender or 'empty'})")


def _registration_text(registration: dict[str, Any] | None) -> str:
    if not registration:
        return ""
    name = f" {registration['name']}" if registration.get("name") else ""
    return f"{registration.get('gender')} {registration.get('category')}{name}"


def _print_plan(plan: Any, *, where: str, in_file: int, prune: bool) -> None:
    from racecheck.core.runners_store import ADDED, REMOVED, UPDATED

    removals = plan.count(REMOVED)
    click.echo(f"{in_file} runner(s) in the file; {where}: {plan.count(ADDED)} to add, "
               f"{plan.count(UPDATED)} to update, {plan.unchanged} unchanged"
               + (f", {removals} to remove" if prune else ""))
    for change in plan.changes:
        if change.change == UPDATED:
            click.echo(f"  update bib {change.bib}: {_registration_text(change.old)} -> "
                       f"{_registration_text(change.new)}")
        elif change.change == REMOVED:
            click.echo(f"  remove bib {change.bib}: {_registration_text(change.old)}")
    if plan.not_in_file:
        shown = ", ".join(plan.not_in_file[:20]) + (" ..." if len(plan.not_in_file) > 20 else "")
        click.echo(f"{len(plan.not_in_file)} registered bib(s) are not in the file and stay "
                   f"registered (--prune removes them): {shown}")


def _utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _aws_error(error: Exception) -> NoReturn:
    fail(f"AWS refused or could not be reached: {error}")


@runners.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@race_date_option
@click.option("--prune", is_flag=True,
              help="Also remove the registered runners absent from FILE (withdrawn runners).")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--yes", is_flag=True, help="Remove runners (--prune) without asking first.")
@click.option("--local", "local_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the registrations in a local run folder (DIR/runners.jsonl), "
                   "not AWS; `racecheck run --out DIR` then uses them.")
@stack_option
@click.option("--table", help="Runners table name (default: from the stack's outputs).")
def runners_import(file: Path, race_date: Any, prune: bool, dry_run: bool, yes: bool,
                   local_dir: Path | None, stack_name: str, table: str | None) -> None:
    """Import a registration CSV: add new runners, update changed ones, record each change.

    Runners absent from FILE stay registered unless --prune is given. Every change (old and
    new registration, when, from which file) is kept: see `racecheck runners history`.

    Example:

        racecheck runners import runners.csv --prune --dry-run

        racecheck runners import runners.csv --local racecheck-out --prune --yes
    """
    import time

    from botocore.exceptions import BotoCoreError, ClientError

    from racecheck.core import runners_store
    from racecheck.core.dynamodb_batches import UnprocessedItemsError
    from racecheck.local import runners_file

    parsed = _parse_runners(file, race_date.date() if race_date else None)
    table_name = None
    reading_started = time.perf_counter()
    try:
        if local_dir is not None:
            where = str(runners_file.runners_path(local_dir))
            current = runners_file.read_items(local_dir)
        else:
            table_name = _table_name(table, stack_name, "RunnersTableName")
            where = f"table {table_name}"
            click.echo(f"Reading the current registrations from {where}", err=True)
            current = runners_store.read_items(table_name=table_name)
        plan = runners_store.plan_import(current, parsed, prune=prune, at=_utc_now(),
                                         source=file.name)
    except (BotoCoreError, ClientError) as error:
        _aws_error(error)
    except ValueError as error:  # a stored item that no longer parses
        fail(f"{where}: {error}")
    read_seconds = time.perf_counter() - reading_started
    _print_plan(plan, where=where, in_file=len(parsed), prune=prune)
    if dry_run:
        click.echo("Dry run: nothing written.")
        return
    removals = plan.count(runners_store.REMOVED)
    if removals and not yes:
        click.confirm(f"Remove {removals} runner(s)?", abort=True, err=True)
    started = time.perf_counter()
    if local_dir is not None:
        runners_file.apply_plan(local_dir, current, plan)
        requests = ""
    else:
        assert table_name is not None
        try:
            with click.progressbar(length=len(plan.items), label="writing", file=sys.stderr,
                                   show_pos=True) as bar:
                result = runners_store.write_items(plan.items, table_name=table_name,
                                                   on_written=bar.update)
        except (BotoCoreError, ClientError, UnprocessedItemsError) as error:
            _aws_error(error)
        requests = f", {result.batches} batch request(s), {result.retries} retried"
    click.echo(f"Imported {file} into {where}: {plan.count(runners_store.ADDED)} added, "
               f"{plan.count(runners_store.UPDATED)} updated, {removals} removed, "
               f"{plan.unchanged} unchanged (reading {read_seconds:.1f} s, writing "
               f"{time.perf_counter() - started:.1f} s{requests})")


@runners.command(name="history")
@click.option("--bib", help="Every change of this bib (default: updates and removals of all).")
@click.option("--all", "include_added", is_flag=True,
              help="Also list additions (a first import adds every runner).")
@local_option
@stack_option
@click.option("--table", help="Runners table name (default: from the stack's outputs).")
@format_option
def runners_history(bib: str | None, include_added: bool, local_dir: Path | None,
                    stack_name: str, table: str | None, output_format: str) -> None:
    """List the changes of registrations, oldest first: who held a bib, and since when.

    Example:

        racecheck runners history --bib 3631 --format table
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from racecheck.core import runners_store
    from racecheck.local import runners_file

    try:
        if local_dir is not None:
            items = runners_file.read_items(local_dir)
        else:
            items = runners_store.read_items(
                table_name=_table_name(table, stack_name, "RunnersTableName"))
    except (BotoCoreError, ClientError) as error:
        _aws_error(error)
    except runners_file.RunnersFileError as error:
        fail(str(error))
    rows = runners_store.history_of(items.values(), bib=bib, include_added=include_added)
    if output_format != "json":
        rows = [{**row, "old": _registration_text(row["old"]),
                 "new": _registration_text(row["new"])} for row in rows]
    _emit(rows, ["bib", "at", "change", "old", "new", "source"], output_format)


# ---------------------------------------------------------------------------- timing


@main.group()
def timing() -> None:
    """Timing data: find chip mules in the splits, import them for the photo checks."""


def _parse_timing(splits: Path, checkpoints: Path, race_date: Any, zone: str | None) -> Any:
    from racecheck.core.timing import (
        TimingError,
        parse_checkpoints_csv,
        parse_splits_csv,
        parse_timezone,
    )

    try:
        tz = parse_timezone(zone) if zone else None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--timezone") from error
    try:
        course = parse_checkpoints_csv(checkpoints.read_text(encoding="utf-8-sig"))
    except TimingError as error:
        fail(f"{checkpoints}: {error}")
    except UnicodeDecodeError as error:
        fail(f"{checkpoints} is not UTF-8 text: {error}")
    try:
        return parse_splits_csv(splits.read_text(encoding="utf-8-sig"), course=course,
                                race_date=race_date.date() if race_date else None, zone=tz)
    except TimingError as error:
        fail(f"{splits}: {error}")
    except UnicodeDecodeError as error:
        fail(f"{splits} is not UTF-8 text: {error}")


def _load_photo_points(path: Path) -> Any:
    from racecheck.core.photo_timing import PhotoPoints, PhotoPointsError

    try:
        return PhotoPoints.from_json_text(path.read_text(encoding="utf-8-sig"))
    except PhotoPointsError as error:
        fail(f"{path}: {error}")
    except UnicodeDecodeError as error:
        fail(f"{path} is not UTF-8 text: {error}")


splits_argument = click.argument("splits", type=click.Path(exists=True, dir_okay=False,
                                                           path_type=Path))
checkpoints_option = click.option(
    "--checkpoints", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The course's timing mats: CSV checkpoint,km.")
clock_time_options = [
    click.option("--race-date", type=click.DateTime(formats=["%Y-%m-%d"]),
                 help="Race day (YYYY-MM-DD), for splits given as times of day."),
    click.option("--timezone", "zone",
                 help="Time zone of splits given as times of day: Europe/Berlin or +02:00."),
]


def _clock_time_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(clock_time_options):
        command = option(command)
    return command


@timing.command(name="check")
@splits_argument
@checkpoints_option
@_clock_time_options
@click.option("--tolerance", type=click.FloatRange(0.1, 30), default=None,
              help="Seconds within which chips count as crossing together  [default: 1 s "
                   "plus the step the times are rounded to: 1.1 for tenths, 2.0 for whole "
                   "seconds]")
@format_option
def timing_check(splits: Path, checkpoints: Path, race_date: Any, zone: str | None,
                 tolerance: float | None, output_format: str) -> None:
    """Validate splits and list chip-mule groups: bibs crossing every mat together.

    A group is bibs whose times agree within the tolerance at every mat they share (at
    least 3). Couples who run every step together look the same: check the photos.

    Example:

        racecheck timing check splits.csv --checkpoints checkpoints.csv --format json
    """
    from racecheck.core.mules import (
        MIN_SHARED_CHECKPOINTS,
        find_mule_groups,
        mule_tolerance,
        time_resolution,
    )

    parsed = _parse_timing(splits, checkpoints, race_date, zone)
    tolerance_s = mule_tolerance(parsed) if tolerance is None else tolerance
    groups = [group.to_dict() for group in find_mule_groups(parsed, tolerance_s=tolerance_s)]
    if output_format == "json":
        click.echo(json.dumps({
            "mule_groups": groups,
            "runners": len(parsed.reads),
            "splits": parsed.split_count,
            "course": [{"checkpoint": checkpoint.name, "km": checkpoint.km,
                        "reads": sum(checkpoint.name in times for times in parsed.reads.values())}
                       for checkpoint in parsed.course],
            "time_resolution_s": time_resolution(parsed),
            "tolerance_s": tolerance_s,
            "min_shared_checkpoints": MIN_SHARED_CHECKPOINTS,
        }, indent=2))
        return
    if output_format == "table":
        click.echo(f"{splits}: {len(parsed.reads)} runner(s), {parsed.split_count} split(s); "
                   f"{len(groups)} group(s) crossing every shared mat within {tolerance_s:g} s "
                   f"(at least {MIN_SHARED_CHECKPOINTS} mats)")
    _emit(groups, ["bibs", "checkpoints", "max_gap_s"], output_format)


@timing.command(name="import")
@splits_argument
@checkpoints_option
@_clock_time_options
@stack_option
@click.option("--table", help="Timing table name (default: from the stack's outputs).")
def timing_import(splits: Path, checkpoints: Path, race_date: Any, zone: str | None,
                  stack_name: str, table: str | None) -> None:
    """Import splits into the deployed timing table, for the photo-versus-chip check.

    Nothing is written unless every row is valid; a re-import overwrites each bib's splits.
    Photos are compared with the chips from then on, where photo_points (cdk.json) places
    them on the course.

    Example:

    \b
        racecheck timing import splits.csv --checkpoints checkpoints.csv \\
          --race-date 2026-04-20 --timezone Europe/Berlin
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from racecheck.core.dynamodb_batches import UnprocessedItemsError
    from racecheck.core.mules import find_mule_groups
    from racecheck.core.timing_store import import_timing

    parsed = _parse_timing(splits, checkpoints, race_date, zone)
    table_name = _table_name(table, stack_name, "TimingTableName")
    try:
        import_timing(parsed, table_name=table_name)
    except (BotoCoreError, ClientError, UnprocessedItemsError) as error:
        _aws_error(error)
    groups = find_mule_groups(parsed)
    click.echo(f"imported the splits of {len(parsed.reads)} runner(s) ({parsed.split_count} "
               f"split(s), {len(parsed.course)} checkpoint(s)) into {table_name}")
    click.echo(f"{len(groups)} possible chip-mule group(s); list them with "
               f"`racecheck timing check {splits} --checkpoints {checkpoints}`")


# ---------------------------------------------------------------------------- search


def _local_lines(local_dir: Path) -> list[dict[str, Any]]:
    results = local_dir / "results.jsonl"
    if not results.is_file():
        fail(f"{results} not found: run `racecheck run ... --out {local_dir}` first")
    return [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _local_photos_of(local_dir: Path, bib: str) -> list[dict[str, Any]]:
    rows = []
    for line in _local_lines(local_dir):
        for link in line.get("links") or []:
            if str(link.get("bib")) == bib:
                rows.append({"key": line["key"], "verdict": line["verdict"],
                             "outcome": link.get("outcome"), "reasons": line.get("reasons"),
                             "recorded_at": line.get("recorded_at")})
                break
    return sorted(rows, key=lambda row: str(row.get("recorded_at") or ""))


def _aws_photos_of(table: str, bib: str) -> list[dict[str, Any]]:
    import boto3

    from racecheck.core.records import from_attribute_values

    paginator = boto3.client("dynamodb").get_paginator("query")
    rows = []
    for page in paginator.paginate(TableName=table, IndexName="by_bib",
                                   KeyConditionExpression="bib = :bib",
                                   ExpressionAttributeValues={":bib": {"S": bib}}):
        for item in page["Items"]:
            row = from_attribute_values(item)
            row["verdict"] = row.pop("photo_verdict", None)
            rows.append(row)
    return rows


@main.command()
@click.option("--bib", required=True, help="Bib number to look up.")
@local_option
@stack_option
@click.option("--table", help="Results table name (default: from the stack's outputs).")
@format_option
def photos(bib: str, local_dir: Path | None, stack_name: str, table: str | None,
           output_format: str) -> None:
    """List every photo of a bib, with its verdict.

    Example:

        racecheck photos --bib 3631 --local racecheck-out
    """
    if local_dir is not None:
        rows = _local_photos_of(local_dir, bib)
    else:
        rows = _aws_photos_of(_table_name(table, stack_name, "ResultsTableName"), bib)
    _emit(rows, ["key", "verdict", "outcome", "reasons", "recorded_at"], output_format)


SUSPECT_COLUMNS = ["bib", "status", "inconsistent", "consistent", "dismissed", "confirmed",
                   "photos_seen", "alerted_at", "photos"]


@main.command()
@local_option
@stack_option
@click.option("--table", help="Evidence table name (default: from the stack's outputs).")
@format_option
def suspects(local_dir: Path | None, stack_name: str, table: str | None,
             output_format: str) -> None:
    """List runners under suspicion, with the evidence across their photos and the decisions.

    Status: suspect (alerted, over the threshold), cleared (alerted, then reviewers'
    dismissals took the runner below it) or confirmed (a reviewer confirmed a photo).

    Example:

        racecheck suspects --local racecheck-out --format csv
    """
    from racecheck.local.decisions_file import LocalRunError, suspects_of_run

    if local_dir is not None:
        try:
            rows = suspects_of_run(local_dir)
        except LocalRunError as error:
            fail(str(error))
    else:
        import boto3

        from racecheck.review_sources import aws_suspects

        rows = aws_suspects(boto3.client("dynamodb"), settings=_settings(),
                            table=_table_name(table, stack_name, "EvidenceTableName"))
    _emit(rows, SUSPECT_COLUMNS, output_format)


def _output(outputs: dict[str, str], key: str, stack_name: str) -> str:
    if key not in outputs:
        fail(f"stack {stack_name} has no output {key}: deploy this version first (`cdk deploy`)")
    return outputs[key]


@main.command()
@click.option("--errors", "errors", is_flag=True,
              help="Queue every photo whose verdict is ERROR again.")
@click.option("--follow-ups", "follow_ups", is_flag=True,
              help="Hand failed index/evidence/alert batches to their function again.")
@click.option("--dry-run", is_flag=True, help="Only list what would be checked again.")
@stack_option
def redrive(errors: bool, follow_ups: bool, dry_run: bool, stack_name: str) -> None:
    """Check again what the deployed pipeline set aside.

    Without options, moves every message of the photo dead-letter queue back to the ingest
    queue (SQS's own move task). Run it when the dead-letter alarm fires, once the cause
    (a permission, an outage, the quota) is fixed.

    Example:

        racecheck redrive                # dead-lettered photos back to the queue
        racecheck redrive --errors       # every ERROR verdict checked again
        racecheck redrive --follow-ups   # failed alert/evidence batches
    """
    import boto3

    from racecheck import redrive as redriving

    outputs = _stack_outputs(stack_name)
    if errors:
        photos = list(redriving.error_photos(
            boto3.client("dynamodb"), table=_output(outputs, "ResultsTableName", stack_name)))
        for photo in photos:
            click.echo(f"s3://{photo.bucket}/{photo.key} ({', '.join(photo.reasons)})")
        if dry_run:
            click.echo(f"{len(photos)} photo(s) with an ERROR verdict would be checked again")
            return
        sent = redriving.queue_again(boto3.client("sqs"), photos=photos,
                                     queue_url=_output(outputs, "PhotoQueueUrl", stack_name))
        click.echo(f"{sent} photo(s) queued to be checked again")
    elif follow_ups:
        if dry_run:
            fail("--dry-run lists ERROR photos only; --follow-ups has nothing to list first")
        function_by_table = {
            outputs["ResultsTableName"]: _output(outputs, "FollowUpFunctionName", stack_name),
            outputs["EvidenceTableName"]: _output(outputs, "SuspectAlertsFunctionName",
                                                  stack_name),
        }
        done = redriving.redrive_follow_ups(
            boto3.client("sqs"), boto3.client("dynamodbstreams"), boto3.client("lambda"),
            queue_url=_output(outputs, "FollowUpDeadLetterQueueUrl", stack_name),
            function_by_table=function_by_table)
        click.echo(f"{done.batches} batch(es), {done.records} stream record(s) followed up again")
        if done.expired:
            click.echo(f"{done.expired} batch(es) are older than the stream's 24 hours and stay "
                       "in the queue: their photos are in the results table (see README)")
    else:
        if dry_run:
            fail("--dry-run lists ERROR photos only: use it with --errors")
        task = redriving.move_dead_letters(
            boto3.client("sqs"),
            dead_letter_queue_arn=_output(outputs, "DeadLetterQueueArn", stack_name),
            queue_arn=_output(outputs, "PhotoQueueArn", stack_name))
        click.echo(f"moving the dead-lettered photos back to the ingest queue (task {task})")



# ---------------------------------------------------------------------------- review


def _review_source(local_dir: Path | None, stack_name: str) -> Any:
    """The local run, or the deployed stack's tables with the caller's credentials."""
    from racecheck.local.decisions_file import LocalRunError
    from racecheck.review_sources import AwsReview, LocalReview

    if local_dir is not None:
        try:
            return LocalReview(local_dir)
        except LocalRunError as error:
            fail(str(error))
    outputs = _stack_outputs(stack_name)
    return AwsReview(results_table=_output(outputs, "ResultsTableName", stack_name),
                     evidence_table=_output(outputs, "EvidenceTableName", stack_name),
                     bucket=_output(outputs, "IngestBucketName", stack_name),
                     settings=_settings())


def _review_filters(verdicts: Sequence[str], reason: str | None, bib: str | None,
                    since: str | None, until: str | None, undecided: bool) -> Any:
    from racecheck.review_sources import ATTENTION, Filters, normalize_time

    try:
        window = normalize_time(since), normalize_time(until)
    except ValueError as error:
        raise click.BadParameter(f"{error} (expected e.g. 2026-11-22T08:00)",
                                 param_hint="--since/--until") from error
    return Filters(verdicts=tuple(verdicts) or ATTENTION, reason=reason, bib=bib,
                   since=window[0], until=window[1], undecided=undecided)


def _export_review(source: Any, filters: Any, export: Path) -> Path:
    from racecheck.review import write_review_page

    records = source.photos(filters)
    return Path(write_review_page(records, out_dir=export.parent, page_name=export.name,
                                  suspects=source.suspects(), photo_source=source.image_file))


def _review_path(photo_ref: str | None, bib: str | None, filters: Any) -> str:
    from urllib.parse import urlencode

    if photo_ref:
        return "/photo?" + urlencode({"ref": photo_ref})
    if bib:
        return "/runner?" + urlencode({"bib": bib})
    query = [("verdict", verdict) for verdict in filters.verdicts]
    query += [(name, value) for name, value in (
        ("reason", filters.reason), ("since", filters.since), ("until", filters.until))
        if value]
    if filters.undecided:
        query.append(("undecided", "1"))
    return "/?" + urlencode(query)


@main.command()
@local_option
@stack_option
@click.option("--photo", "photo_ref",
              help="Open this photo: its key (local) or s3://BUCKET/KEY, as alerts print it.")
@click.option("--bib", help="Open this runner: every photo of the bib, evidence, decisions.")
@click.option("--verdict", "verdicts", multiple=True,
              type=click.Choice(["FAIL", "REVIEW", "ERROR", "REJECTED", "PASS"]),
              help="Only these verdicts (repeatable; default: all but PASS).")
@click.option("--reason", help="Only photos with this reason code, e.g. GENDER_MISMATCH.")
@click.option("--since", help="Only photos recorded from this time (ISO, UTC).")
@click.option("--until", help="Only photos recorded up to this time (ISO, UTC).")
@click.option("--undecided", is_flag=True, help="Only photos nobody has decided yet.")
@click.option("--export", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the static page to this file (photos/ beside it) instead of "
                   "serving; decisions are shown, not taken.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default="any free port",
              help="Port on 127.0.0.1.")
@click.option("--no-browser", is_flag=True, help="Print the address; do not open a browser.")
def review(local_dir: Path | None, stack_name: str, photo_ref: str | None, bib: str | None,
           verdicts: tuple[str, ...], reason: str | None, since: str | None,
           until: str | None, undecided: bool, export: Path | None, port: int,
           no_browser: bool) -> None:
    """Review flagged photos in the browser and Confirm or Dismiss them.

    Serves the review page on 127.0.0.1 only, until Ctrl-C: from a local run (--local) or
    from the deployed stack's tables, with photos through presigned URLs that expire after
    15 minutes. Decisions are recorded as you (your AWS identity, or your local user name).

    Example:

        racecheck review --local racecheck-out --undecided

        racecheck review --photo 's3://my-ingest-bucket/km 30/IMG_0412.jpg'

        racecheck review --bib 3631 --export bib-3631.html
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from racecheck.review_server import serve

    filters = _review_filters(verdicts, reason, bib, since, until, undecided)
    source = _review_source(local_dir, stack_name)
    try:
        if export is not None:
            page = _export_review(source, filters, export)
            click.echo(f"Review page: {page}")
            return
        click.echo(f"Reviewing {source.where} as {source.reviewer}; Ctrl-C stops the page.")
        serve(source, port=port, open_path=_review_path(photo_ref, bib, filters),
              open_browser=not no_browser, announce=lambda url: click.echo(f"Open {url}"))
    except (BotoCoreError, ClientError) as error:
        _aws_error(error)


@main.command()
@click.argument("photo_key", required=False)
@click.option("--bib", help="Decide every photo that counts against this runner (a suspect) "
                            "instead of one photo.")
@click.option("--confirm", is_flag=True, help="The bib is worn by someone else: confirmed.")
@click.option("--dismiss", is_flag=True, help="A false alarm: the photo no longer counts.")
@click.option("--undo", is_flag=True, help="Withdraw the current decision (kept in history).")
@click.option("--note", default="", help="Why, for the other reviewers.")
@local_option
@stack_option
def decide(photo_key: str | None, bib: str | None, confirm: bool, dismiss: bool, undo: bool,
           note: str, local_dir: Path | None, stack_name: str) -> None:
    """Record a decision on a flagged photo; the machine's verdict is kept as it was.

    PHOTO_KEY is the photo's key in a local run, or its S3 key or s3://BUCKET/KEY on AWS.
    Every decision is kept with who made it and when; a dismissed photo no longer counts
    against its runner, a confirmed one marks the runner confirmed. With --bib instead of
    PHOTO_KEY, every photo that counts against that runner takes the decision.

    Example:

        racecheck decide 'km 30/IMG_0412.jpg' --dismiss --local racecheck-out

        racecheck decide s3://my-ingest-bucket/km5/IMG_9.jpg --confirm --note "swap"

        racecheck decide --bib 3631 --dismiss --note "runner wears a jacket over the bib"
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from racecheck.core.decisions import AlreadyDecided, DecisionRefused, NotFlagged
    from racecheck.review_sources import UnknownPhoto

    chosen = [name for name, given in (("confirm", confirm), ("dismiss", dismiss),
                                       ("undo", undo)) if given]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --confirm, --dismiss or --undo")
    if (photo_key is None) == (bib is None):
        raise click.UsageError("give either PHOTO_KEY or --bib")
    source = _review_source(local_dir, stack_name)
    if bib is not None:
        try:
            _decide_for_runner(source, bib.strip(), chosen[0], note)
        except (BotoCoreError, ClientError) as error:
            _aws_error(error)
        return
    assert photo_key is not None
    try:
        record = source.decide(photo_key, chosen[0], note)
    except UnknownPhoto as error:
        raise click.BadParameter(str(error), param_hint="PHOTO_KEY") from error
    except NotFlagged as error:
        raise click.BadParameter(str(error), param_hint="PHOTO_KEY") from error
    except AlreadyDecided as error:
        click.echo(f"racecheck: {error}", err=True)
        return
    except DecisionRefused as error:
        fail(str(error))
    except (BotoCoreError, ClientError) as error:
        _aws_error(error)
    entry = record["decisions"][-1]
    done = record.get("decision") or "decision withdrawn (undecided)"
    click.echo(f"{record.get('key')}: {done} by {entry['by']} at {entry['at']} (verdict "
               f"{record.get('verdict')} kept; {len(record['decisions'])} decision(s) in its "
               "history)")


def _decide_for_runner(source: Any, bib: str, action: str, note: str) -> None:
    """`racecheck decide --bib`: one decision on each photo that counts against the runner."""
    from racecheck.review_sources import decide_runner

    runner = source.runner(bib)
    if runner.evidence is None and not runner.photos:
        raise click.BadParameter(f"no photo and no evidence for bib {bib} in {source.where}",
                                 param_hint="--bib")
    outcome = decide_runner(source, bib, action, note)
    state = {"confirm": "confirmed", "dismiss": "dismissed", "undo": "undecided"}[action]
    for ref in outcome["decided"]:
        click.echo(f"{ref}: {state} by {source.reviewer}")
    for skipped in outcome["skipped"]:
        click.echo(f"racecheck: {skipped['ref']}: {skipped['why']}", err=True)
    # On AWS the evidence follows through the results stream, seconds later.
    status = (source.runner(bib).evidence or {}).get("status") if source.local else None
    click.echo(f"bib {bib}: {len(outcome['decided'])} photo(s) decided"
               + ("" if outcome["decided"] else
                  f" (no photo counts against the runner, or all are {state} already)")
               + (f"; runner status {status}" if status else ""))
