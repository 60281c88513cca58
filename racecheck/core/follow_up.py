"""What follows once a photo's record is written: index entries, runner evidence, alerts.

The state machine ends at the conditional write of the record. Everything after it is
driven by the results table's DynamoDB stream, whose records are retried until they
succeed; each step is idempotent, so a retried or repeated stream record changes nothing
twice:

- one by_bib index item per number in the photo (a put of the same item);
- the runner's evidence counters, once per (photo, bib): the update is conditional on the
  photo not being in the runner's ``photos`` set yet;
- the photo's alert, published and then marked sent (``alert_sent_at``), so a retry after
  a failed publish sends it and a retry after a successful one does not. Only a crash
  between the publish and the mark can send it twice; nothing can lose it.

Suspect alerts follow the evidence table's own stream: records of one runner arrive in
order, one batch at a time, so the runner crossing the threshold is alerted once
(publish, then ``alerted``), whichever photos pushed it over and however concurrently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from racecheck.core.records import from_attribute_values, to_attribute_values
from racecheck.core.settings import Settings

BIB_ITEM_PREFIX = "bib#"
SMS_LIMIT = 160  # one GSM-7 segment
PHOTO_ALERT = "PHOTO"
SUSPECT_ALERT = "SUSPECT"
_CONDITIONAL_CHECK_FAILED = "ConditionalCheckFailedException"


def _new_and_old(stream_record: Mapping[str, Any]) -> tuple[dict[str, Any] | None,
                                                            dict[str, Any] | None]:
    change = stream_record.get("dynamodb") or {}
    new = change.get("NewImage")
    old = change.get("OldImage")
    return (from_attribute_values(new) if new else None,
            from_attribute_values(old) if old else None)


def photo_record_to_follow(stream_record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The photo's record when this stream record is a new verdict; else None.

    Index items (``version`` starting ``bib#``) and the follow-up's own bookkeeping updates
    (same ``recorded_at`` before and after) need nothing.
    """
    if stream_record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    new, old = _new_and_old(stream_record)
    if new is None or str(new.get("version", "")).startswith(BIB_ITEM_PREFIX):
        return None
    if old is not None and old.get("recorded_at") == new.get("recorded_at"):
        return None
    return new


def bib_index_item(record: Mapping[str, Any], bib: str, outcome: str) -> dict[str, Any]:
    """One item per (photo, bib): the sparse by_bib index lists every photo of a bib."""
    return {
        "photo": record["photo"],
        "version": f"{BIB_ITEM_PREFIX}{bib}#{record['version']}",
        "bib": bib,
        "key": record["key"],
        "bucket": record["bucket"],
        # Not "verdict": the by_verdict index holds the photos' own records only.
        "photo_verdict": record["verdict"],
        "outcome": outcome,
        "recorded_at": record["recorded_at"],
    }


def evidence_update(record: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """UpdateItem arguments adding this photo to the runner's counters, once."""
    outcome = entry.get("outcome", "unknown")
    photo_id = str(record["photo"])
    names = {f"#{name}": name for name in (
        "photos_seen", "consistent", "inconsistent", "photos", "alerted", "last_seen_at",
        "registered")}
    values: dict[str, Any] = {
        ":one": 1,
        ":consistent": 1 if outcome == "consistent" else 0,
        ":inconsistent": 1 if outcome == "inconsistent" else 0,
        ":photo": photo_id,
        ":photos": {photo_id},
        ":false": False,
        ":now": record["recorded_at"],
        ":registered": dict(entry.get("registered") or {}),
    }
    adds = ["#photos_seen :one", "#consistent :consistent", "#inconsistent :inconsistent",
            "#photos :photos"]
    if outcome == "inconsistent":
        names["#inconsistent_photos"] = "inconsistent_photos"
        adds.append("#inconsistent_photos :photos")
    for index, code in enumerate(sorted(set(entry.get("reasons") or []))):
        names[f"#reason{index}"] = f"reason_{code}"
        adds.append(f"#reason{index} :one")
    return {
        "Key": {"bib": {"S": str(entry["bib"])}},
        # Every attribute goes through a name placeholder: several are reserved words.
        "UpdateExpression": "ADD " + ", ".join(adds) + " SET #alerted = "
        "if_not_exists(#alerted, :false), #last_seen_at = :now, #registered = :registered",
        "ConditionExpression": "attribute_not_exists(#photos) OR NOT contains(#photos, :photo)",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": to_attribute_values(values),
    }


def _condition_failed(error: Exception) -> bool:
    return getattr(error, "response", {}).get("Error", {}).get("Code") == _CONDITIONAL_CHECK_FAILED


def follow_up_photo(record: Mapping[str, Any], *, dynamodb: Any, sns: Any, results_table: str,
                    evidence_table: str, topic_arn: str) -> dict[str, int]:
    """Index entries, evidence and the alert for one recorded photo; safe to repeat."""
    done = {"index_items": 0, "evidence_counted": 0, "alerts_sent": 0}
    if record.get("verdict") == "ERROR":
        return done
    entries = list(record.get("evidence") or [])
    for entry in entries:
        item = bib_index_item(record, str(entry["bib"]), str(entry.get("outcome", "unknown")))
        dynamodb.put_item(TableName=results_table, Item=to_attribute_values(item))
        done["index_items"] += 1
    for entry in entries:
        if not entry.get("registered"):
            continue  # an unregistered number says nothing about any runner
        try:
            dynamodb.update_item(TableName=evidence_table, **evidence_update(record, entry))
            done["evidence_counted"] += 1
        except Exception as error:
            if not _condition_failed(error):
                raise  # already counted otherwise: a retried stream record
    alert = record.get("alert")
    if alert and not record.get("alert_sent_at"):
        sns.publish(
            TopicArn=topic_arn, Subject=alert["subject"], Message=alert["message"],
            MessageAttributes={
                "alert_type": {"DataType": "String", "StringValue": PHOTO_ALERT},
                "verdict": {"DataType": "String", "StringValue": str(record["verdict"])},
                "reasons": {"DataType": "String.Array", "StringValue": alert["reasons_json"]},
            },
        )
        mark_alert_sent(dynamodb, results_table, record)
        done["alerts_sent"] += 1
    return done


def mark_alert_sent(dynamodb: Any, table: str, record: Mapping[str, Any]) -> None:
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"photo": {"S": record["photo"]}, "version": {"S": record["version"]}},
            UpdateExpression="SET alert_sent_at = :now",
            ConditionExpression="attribute_not_exists(alert_sent_at) AND recorded_at = :recorded",
            ExpressionAttributeValues={":now": {"S": _utc_now()},
                                       ":recorded": {"S": record["recorded_at"]}},
        )
    except Exception as error:
        if not _condition_failed(error):
            raise


def _utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------ suspects


def evidence_to_judge(stream_record: Mapping[str, Any]) -> dict[str, Any] | None:
    if stream_record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    new, _ = _new_and_old(stream_record)
    return new


def is_suspect(evidence: Mapping[str, Any], settings: Settings) -> bool:
    """Enough inconsistent photos, and more of them than ``suspect_ratio`` x consistent."""
    inconsistent = int(evidence.get("inconsistent") or 0)
    consistent = int(evidence.get("consistent") or 0)
    return (inconsistent >= settings.suspect_min_inconsistent
            and inconsistent > settings.suspect_ratio * consistent)


def _runner(registered: Mapping[str, Any] | None) -> str:
    if not registered:
        return "the registered runner"
    name = str(registered.get("name") or "").strip()
    who = f"{registered.get('gender')} {registered.get('category') or ''}".strip()
    return f"{name} ({who})" if name else f"the runner registered {who}"


def _ascii(text: str) -> str:
    # One non-GSM character turns an SMS into UCS-2 (70 characters a segment).
    return text.encode("ascii", "replace").decode("ascii")


def suspect_alert(evidence: Mapping[str, Any]) -> dict[str, str]:
    """Subject, full message (email) and one-segment SMS for a runner under suspicion."""
    bib = str(evidence["bib"])
    inconsistent = int(evidence.get("inconsistent") or 0)
    consistent = int(evidence.get("consistent") or 0)
    reason_counts = sorted(
        ((name.removeprefix("reason_"), int(count)) for name, count in evidence.items()
         if name.startswith("reason_") and count),
        key=lambda pair: (-pair[1], pair[0]))
    photos: Sequence[str] = sorted(evidence.get("inconsistent_photos") or [])
    lines = [
        f"racecheck SUSPECT: bib {bib}, {_runner(evidence.get('registered'))}.",
        f"Inconsistent photos: {inconsistent}, consistent photos: {consistent}.",
        "Evidence: " + (", ".join(f"{code} in {count} photo(s)" for code, count in reason_counts)
                        or "none recorded"),
        "",
        "Review these photos before any decision:",
        *[f"- s3://{photo}" for photo in photos],
        "",
        "Machine estimates of age and gender are evidence for a human reviewer, not proof.",
    ]
    sms = _ascii(f"racecheck: bib {bib[:12]} is a suspect: {inconsistent} of "
                 f"{inconsistent + consistent} photos disagree with the registration. "
                 "Details by email.")
    return {
        "subject": _ascii(f"racecheck SUSPECT: bib {bib}")[:99],
        "message": "\n".join(lines),
        "sms": sms[:SMS_LIMIT],
    }


def alert_suspect(evidence: Mapping[str, Any], *, dynamodb: Any, sns: Any, evidence_table: str,
                  topic_arn: str, settings: Settings) -> bool:
    """Publish the suspect alert once; True when it was sent now."""
    if evidence.get("alerted") or not is_suspect(evidence, settings):
        return False
    alert = suspect_alert(evidence)
    sns.publish(
        TopicArn=topic_arn,
        Subject=alert["subject"],
        # Per-protocol texts: subscribers by SMS get one short segment, e-mail the full list.
        MessageStructure="json",
        Message=json.dumps({"default": alert["message"], "email": alert["message"],
                            "sms": alert["sms"]}),
        MessageAttributes={
            "alert_type": {"DataType": "String", "StringValue": SUSPECT_ALERT},
            "verdict": {"DataType": "String", "StringValue": SUSPECT_ALERT},
            "bib": {"DataType": "String", "StringValue": str(evidence["bib"])},
        },
    )
    try:
        dynamodb.update_item(
            TableName=evidence_table, Key={"bib": {"S": str(evidence["bib"])}},
            UpdateExpression="SET alerted = :true, alerted_at = :now",
            ConditionExpression="attribute_not_exists(alerted) OR alerted = :false",
            ExpressionAttributeValues={":true": {"BOOL": True}, ":false": {"BOOL": False},
                                       ":now": {"S": _utc_now()}},
        )
    except Exception as error:
        if not _condition_failed(error):
            raise
    return True
