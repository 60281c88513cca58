"""racecheck's command line: thin commands over the library."""

from __future__ import annotations

import csv
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
    `racecheck suspects`.
    """


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
         jobs: int) -> tuple[Any, Path | None]:
    from racecheck.core.registry import RegistryError
    from racecheck.local.backends import BackendUnavailable, make_backend
    from racecheck.local.environment import LocalSetupError
    from racecheck.local.runner import collect_photos, run_photos

    photos = collect_photos(inputs)
    if not photos:
        fail("no files to check in " + ", ".join(str(path) for path in inputs))
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
                backend=backend, runners_csv=runners, in_flight=max(2, jobs * 2),
                passthrough_rekognition=detector == "rekognition",
                on_result=lambda _line: bar.update(1))
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
              help="Registration CSV: bib,gender,age_category[,name,...].")
@click.option("--detector", type=click.Choice(["local", "rekognition"]), default="local",
              show_default=True,
              help="local: offline detectors; rekognition: the real API with your credentials.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_OUT, show_default=True,
              help="Folder for results and the review page.")
@click.option("--jobs", type=click.IntRange(1, 64), default=os.cpu_count() or 1,
              show_default="number of cores", help="Photos analysed in parallel.")
def run(photos: tuple[Path, ...], runners: Path | None, detector: str, out_dir: Path,
        jobs: int) -> None:
    """Check photos locally by executing the deployed state machine definition.

    Every file gets exactly one verdict line in OUT/results.jsonl, whatever it contains.

    Example:

        racecheck run ~/race/photos --runners runners.csv --out checked
    """
    summary, review_page = _run(photos, out_dir=out_dir, runners=runners, detector=detector,
                                jobs=jobs)
    _print_summary(summary, review_page=review_page)


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
    """The registration list: check it, import it into the runners table."""


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
    parsed = _parse_runners(file, race_date.date() if race_date else None)
    click.echo(f"{file}: {len(parsed)} runner(s), all rows valid")


@runners.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@race_date_option
@stack_option
@click.option("--table", help="Runners table name (default: from the stack's outputs).")
def runners_import(file: Path, race_date: Any, stack_name: str, table: str | None) -> None:
    """Import a registration CSV into the deployed runners table (re-import updates).

    Example:

        racecheck runners import runners.csv --stack Racecheck
    """
    from racecheck.core.runners_store import import_runners

    parsed = _parse_runners(file, race_date.date() if race_date else None)
    table_name = _table_name(table, stack_name, "RunnersTableName")
    result = import_runners(parsed, table_name=table_name)
    click.echo(f"imported {len(parsed)} runner(s) into {table_name}: {result}")


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


@main.command()
@local_option
@stack_option
@click.option("--table", help="Evidence table name (default: from the stack's outputs).")
@format_option
def suspects(local_dir: Path | None, stack_name: str, table: str | None,
             output_format: str) -> None:
    """List runners under suspicion, with the evidence across their photos.

    Example:

        racecheck suspects --local racecheck-out --format csv
    """
    if local_dir is not None:
        path = local_dir / "suspects.json"
        if not path.is_file():
            fail(f"{path} not found: run `racecheck run ... --out {local_dir}` first")
        rows = json.loads(path.read_text(encoding="utf-8"))
    else:
        import boto3

        from racecheck.core.records import from_attribute_values

        table_name = _table_name(table, stack_name, "EvidenceTableName")
        paginator = boto3.client("dynamodb").get_paginator("scan")
        rows = [from_attribute_values(item)
                for page in paginator.paginate(
                    TableName=table_name, FilterExpression="alerted = :yes",
                    ExpressionAttributeValues={":yes": {"BOOL": True}})
                for item in page["Items"]]
    _emit(rows, ["bib", "inconsistent", "consistent", "photos_seen", "alerted_at", "photos"],
          output_format)


COMMANDS: dict[str, Callable[..., Any]] = {}
