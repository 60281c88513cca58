"""What the review page and `racecheck decide` read and write: a local run or the stack.

Both sources answer the same questions (the photos matching some filters, one photo, one
runner with all their photos, the suspects) and record decisions the same way: on the
photo's own record, never over the machine's verdict (racecheck.core.decisions).

- ``LocalReview``: a `racecheck run` output folder; decisions go to ``decisions.jsonl``.
- ``AwsReview``: the deployed tables, read and written with the reviewer's own
  credentials; photos are shown through presigned URLs that expire after
  ``PRESIGNED_SECONDS``.
"""

from __future__ import annotations

import functools
import getpass
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from racecheck.core.decisions import (
    DECIDABLE_VERDICTS,
    STATE_AFTER,
    DecisionRefused,
    check_decision,
    current_state,
    decision_entry,
    decision_item_update,
    runner_status,
)
from racecheck.core.digest import BY_VERDICT_INDEX
from racecheck.core.records import from_attribute_values
from racecheck.core.settings import Settings
from racecheck.local import decisions_file
from racecheck.local.decisions_file import UnknownPhoto
from racecheck.review import PHOTOS_DIR_NAME, VERDICT_ORDER, thumbnail_name, verdict_of

ATTENTION = ("FAIL", "REVIEW", "ERROR", "REJECTED")
BY_BIB_INDEX = "by_bib"
BIB_ITEM_PREFIX = "bib#"
# Long enough to look at a page of photos, short enough that a forwarded page is useless.
PRESIGNED_SECONDS = 900
MAX_PHOTOS = 500
BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem's keys per request
DECIDE_ATTEMPTS = 5  # optimistic writes of one decision while others land on the photo

__all__ = ["AwsReview", "DecisionRefused", "Filters", "LocalReview", "ReviewSource",
           "UnknownPhoto", "decide_runner", "utc_now"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize_time(value: str | None) -> str | None:
    """An ISO time as the records stamp it (UTC, ``Z``); a time without zone is UTC."""
    if not value:
        return None
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bibs_of(record: Mapping[str, Any]) -> set[str]:
    numbers = {str(entry.get("bib")) for entry in record.get("evidence") or []}
    numbers |= {str(link.get("bib")) for link in record.get("links") or []}
    numbers |= {str(bib.get("number")) for bib in record.get("bibs") or []}
    return {number for number in numbers if number and number != "None"}


@dataclass(frozen=True)
class Filters:
    verdicts: tuple[str, ...] = ATTENTION
    reason: str | None = None
    bib: str | None = None
    since: str | None = None  # recorded_at >= since (UTC, ISO)
    until: str | None = None  # recorded_at <= until
    undecided: bool = False

    def matches(self, record: Mapping[str, Any]) -> bool:
        recorded = str(record.get("recorded_at") or "")
        return (verdict_of(record) in self.verdicts
                and (not self.reason or self.reason in (record.get("reasons") or []))
                and (not self.bib or self.bib in bibs_of(record))
                and (not self.since or recorded >= self.since)
                and (not self.until or recorded <= self.until)
                and (not self.undecided or current_state(record.get("decisions")) is None))


def sort_for_review(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Worst verdict first; newest first within a verdict."""
    newest_first = sorted(records, key=lambda r: str(r.get("recorded_at") or ""), reverse=True)
    return [dict(r) for r in sorted(newest_first,
                                    key=lambda r: VERDICT_ORDER.index(verdict_of(r)))]


@dataclass
class Runner:
    bib: str
    evidence: dict[str, Any] | None
    photos: list[dict[str, Any]] = field(default_factory=list)


class ReviewSource(Protocol):
    where: str
    local: bool

    @property
    def reviewer(self) -> str: ...
    def photos(self, filters: Filters, *, limit: int = MAX_PHOTOS) -> list[dict[str, Any]]: ...
    def photo(self, ref: str) -> dict[str, Any] | None: ...
    def runner(self, bib: str) -> Runner: ...
    def suspects(self) -> list[dict[str, Any]]: ...
    def decide(self, ref: str, action: str, note: str = "") -> dict[str, Any]: ...
    def image_url(self, record: Mapping[str, Any]) -> str | None: ...
    def image_file(self, record: Mapping[str, Any]) -> Path | IO[bytes] | None: ...
    def ref_of(self, record: Mapping[str, Any]) -> str: ...


# ------------------------------------------------------------------------------ local


class LocalReview:
    """A local run's folder: results.jsonl, decisions.jsonl, evidence.json, photos/."""

    local = True

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.where = str(run_dir)
        decisions_file.read_results(run_dir)  # fails early, with a clear message

    @functools.cached_property
    def reviewer(self) -> str:
        return getpass.getuser()

    def _records(self) -> list[dict[str, Any]]:
        return decisions_file.records(self.run_dir)

    def photos(self, filters: Filters, *, limit: int = MAX_PHOTOS) -> list[dict[str, Any]]:
        return sort_for_review([r for r in self._records() if filters.matches(r)])[:limit]

    def photo(self, ref: str) -> dict[str, Any] | None:
        return next((r for r in self._records() if r.get("key") == ref), None)

    def runner(self, bib: str) -> Runner:
        records = self._records()
        evidence = decisions_file.runners_evidence(self.run_dir, records).get(bib) if (
            self.run_dir / decisions_file.EVIDENCE_FILE).is_file() else None
        return Runner(bib=bib, evidence=evidence,
                      photos=sort_for_review([r for r in records if bib in bibs_of(r)]))

    def suspects(self) -> list[dict[str, Any]]:
        return decisions_file.suspects(self.run_dir)

    def decide(self, ref: str, action: str, note: str = "") -> dict[str, Any]:
        record, _ = decisions_file.record_decision(self.run_dir, ref, action,
                                                   by=self.reviewer, at=utc_now(), note=note)
        return record

    def _thumbnail(self, record: Mapping[str, Any]) -> Path | None:
        path = self.run_dir / PHOTOS_DIR_NAME / thumbnail_name(str(record.get("key", "")))
        return path if path.is_file() else None

    def image_url(self, record: Mapping[str, Any]) -> str | None:
        thumbnail = self._thumbnail(record)
        return f"/images/{thumbnail.name}" if thumbnail else None

    def image_file(self, record: Mapping[str, Any]) -> Path | None:
        return self._thumbnail(record)

    def ref_of(self, record: Mapping[str, Any]) -> str:
        return str(record.get("key", ""))


# ------------------------------------------------------------------------------ AWS


def aws_suspects(dynamodb: Any, *, table: str, settings: Settings) -> list[dict[str, Any]]:
    """Runners alerted (suspect or cleared) or confirmed, with their status and decisions."""
    paginator = dynamodb.get_paginator("scan")
    items = [from_attribute_values(item) for page in paginator.paginate(
        TableName=table,
        FilterExpression="alerted = :yes OR attribute_exists(confirmed_photos)",
        ExpressionAttributeValues={":yes": {"BOOL": True}}) for item in page["Items"]]
    for item in items:
        item["status"] = runner_status(item, settings)
        item["dismissed"] = len(item.get("dismissed_photos") or ())
        item["confirmed"] = len(item.get("confirmed_photos") or ())
    return sorted(items, key=lambda item: str(item["bib"]))


def _condition_failed(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return bool(code == "ConditionalCheckFailedException")


class AwsReview:
    """The deployed stack's tables and ingest bucket, with the caller's credentials."""

    local = False

    def __init__(self, *, results_table: str, evidence_table: str, bucket: str,
                 settings: Settings, session: Any = None) -> None:
        import boto3
        from botocore.config import Config

        session = session or boto3.session.Session()
        self.results_table = results_table
        self.evidence_table = evidence_table
        self.bucket = bucket
        self.settings = settings
        self.where = f"table {results_table}"
        self.region = session.region_name  # for the S3 console links
        self.dynamodb = session.client("dynamodb")
        # Presigned URLs must be SigV4 and name the bucket's region to open everywhere.
        self.s3 = session.client("s3", config=Config(signature_version="s3v4"))
        self.sts = session.client("sts")

    @functools.cached_property
    def reviewer(self) -> str:
        """Who decides: the caller's identity as AWS knows it (user or assumed role)."""
        return str(self.sts.get_caller_identity()["Arn"])

    # ---------------------------------------------------------------- reading

    def _query(self, **request: Any) -> Iterator[dict[str, Any]]:
        paginator = self.dynamodb.get_paginator("query")
        for page in paginator.paginate(TableName=self.results_table, **request):
            for item in page["Items"]:
                yield from_attribute_values(item)

    def _full_records(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """BatchGetItem of the photos' own records, retrying what DynamoDB leaves unprocessed."""
        unique = list(dict.fromkeys(keys))
        records: list[dict[str, Any]] = []
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            request: dict[str, Any] = {self.results_table: {"Keys": [
                {"photo": {"S": photo}, "version": {"S": version}}
                for photo, version in unique[start:start + BATCH_GET_LIMIT]]}}
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                records += [from_attribute_values(item)
                            for item in answer["Responses"].get(self.results_table, [])]
                request = answer.get("UnprocessedKeys") or {}
        return records

    def _photos_of_bib(self, bib: str) -> list[dict[str, Any]]:
        keys = [(str(item["photo"]), str(item["version"]).split("#", 2)[2])
                for item in self._query(IndexName=BY_BIB_INDEX,
                                        KeyConditionExpression="bib = :bib",
                                        ExpressionAttributeValues={":bib": {"S": bib}})]
        return self._full_records(keys)

    def photos(self, filters: Filters, *, limit: int = MAX_PHOTOS) -> list[dict[str, Any]]:
        if filters.bib:
            candidates = self._photos_of_bib(filters.bib)
        else:
            keys: list[tuple[str, str]] = []
            for verdict in filters.verdicts:
                condition = "#verdict = :verdict"
                values: dict[str, Any] = {":verdict": {"S": verdict}}
                if filters.since or filters.until:
                    condition += " AND #recorded_at BETWEEN :since AND :until"
                    values[":since"] = {"S": filters.since or ""}
                    values[":until"] = {"S": filters.until or "~"}  # after every digit
                for item in self._query(
                        IndexName=BY_VERDICT_INDEX, KeyConditionExpression=condition,
                        ExpressionAttributeNames={
                            "#verdict": "verdict",
                            **({"#recorded_at": "recorded_at"} if ":since" in values else {})},
                        ExpressionAttributeValues=values, ScanIndexForward=False):
                    keys.append((str(item["photo"]), str(item["version"])))
                    if len(keys) >= limit * len(filters.verdicts):
                        break
            candidates = self._full_records(keys)
        return sort_for_review([r for r in candidates if filters.matches(r)])[:limit]

    def _record_of(self, ref: str) -> dict[str, Any] | None:
        photo = ref.removeprefix("s3://")
        if "/" not in photo:
            photo = f"{self.bucket}/{photo}"
        own = [item for item in self._query(
            KeyConditionExpression="photo = :photo",
            ExpressionAttributeValues={":photo": {"S": photo}}, ConsistentRead=True)
            if not str(item.get("version", "")).startswith(BIB_ITEM_PREFIX)]
        # A key uploaded again has one record per version: the newest is the one to decide.
        return max(own, key=lambda item: str(item.get("recorded_at") or "")) if own else None

    def photo(self, ref: str) -> dict[str, Any] | None:
        record = self._record_of(ref)
        if record is None and not ref.startswith("s3://") and "/" in ref:
            # A key with slashes, given without its bucket.
            record = self._record_of(f"s3://{self.bucket}/{ref}")
        return record

    def runner(self, bib: str) -> Runner:
        item = self.dynamodb.get_item(TableName=self.evidence_table, Key={"bib": {"S": bib}},
                                      ConsistentRead=True).get("Item")
        evidence = None
        if item:
            evidence = from_attribute_values(item)
            evidence["status"] = runner_status(evidence, self.settings)
        return Runner(bib=bib, evidence=evidence,
                      photos=sort_for_review(self._photos_of_bib(bib)))

    def suspects(self) -> list[dict[str, Any]]:
        return aws_suspects(self.dynamodb, table=self.evidence_table, settings=self.settings)

    # ---------------------------------------------------------------- deciding

    def decide(self, ref: str, action: str, note: str = "") -> dict[str, Any]:
        """Append the decision; a concurrent reviewer's entry goes first, never lost."""
        record = self.photo(ref)
        if record is None:
            raise UnknownPhoto(f"no photo {ref!r} in {self.where}")
        check_decision(record, action)
        entry = decision_entry(action, by=self.reviewer, at=utc_now(), note=note)
        for _ in range(DECIDE_ATTEMPTS):
            try:
                answer = self.dynamodb.update_item(
                    TableName=self.results_table, ReturnValues="ALL_NEW",
                    **decision_item_update(record, entry,
                                           seen=len(record.get("decisions") or [])))
                return from_attribute_values(answer["Attributes"])
            except Exception as error:
                if not _condition_failed(error):
                    raise
            # Someone decided meanwhile (or the record changed): read it again and append
            # after their entry. Both decisions are kept; the later one is the state.
            reread = self.photo(ref)
            if reread is None or str(reread.get("verdict")) not in DECIDABLE_VERDICTS:
                raise DecisionRefused(f"{record.get('key')} is no longer a "
                                      f"{' or '.join(DECIDABLE_VERDICTS)} record")
            record = reread
        raise DecisionRefused(f"{record.get('key')} kept changing under "
                              f"{DECIDE_ATTEMPTS} attempts: try again")

    # ---------------------------------------------------------------- photos

    def image_url(self, record: Mapping[str, Any]) -> str | None:
        params = {"Bucket": str(record.get("bucket") or self.bucket),
                  "Key": str(record.get("key", ""))}
        if record.get("version") and record.get("version") != "null":
            params["VersionId"] = str(record["version"])
        return str(self.s3.generate_presigned_url("get_object", Params=params,
                                                  ExpiresIn=PRESIGNED_SECONDS))

    def image_file(self, record: Mapping[str, Any]) -> IO[bytes] | None:
        import io

        params = {"Bucket": str(record.get("bucket") or self.bucket),
                  "Key": str(record.get("key", ""))}
        if record.get("version") and record.get("version") != "null":
            params["VersionId"] = str(record["version"])
        try:
            return io.BytesIO(self.s3.get_object(**params)["Body"].read())
        except Exception:  # an expired or deleted photo: a card without a picture
            return None

    def ref_of(self, record: Mapping[str, Any]) -> str:
        return str(record.get("photo") or f"{record.get('bucket')}/{record.get('key')}")


def decide_runner(source: ReviewSource, bib: str, action: str, note: str
                  ) -> dict[str, Any]:
    """One decision on each of the runner's photos that counted against them."""
    decided, skipped = [], []
    target = STATE_AFTER[action]
    for record in source.runner(bib).photos:
        counted = any(str(entry.get("bib")) == bib and entry.get("outcome") == "inconsistent"
                      for entry in record.get("evidence") or [])
        if (not counted or str(record.get("verdict")) not in DECIDABLE_VERDICTS
                or current_state(record.get("decisions")) == target):
            continue
        ref = source.ref_of(record)
        try:
            source.decide(ref, action, note)
            decided.append(ref)
        except DecisionRefused as error:
            skipped.append({"ref": ref, "why": str(error)})
    return {"bib": bib, "decided": decided, "skipped": skipped}
