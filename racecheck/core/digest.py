"""One message listing the REVIEW photos of a time window, instead of one email per photo.

With ``review_alerts: digest`` the workflow no longer publishes REVIEW photos one by one; a
scheduled Lambda reads the window's REVIEW records from the results table's ``by_verdict``
index and sends them as one digest. FAIL photos and SUSPECT alerts still go out at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from racecheck.core.records import SUBJECT_LIMIT, describe_link
from racecheck.core.review_links import ReviewLinks
from racecheck.core.rules import (
    AGE_OUTSIDE_CATEGORY,
    BIB_UNREGISTERED,
    GENDER_MISMATCH,
    ONE_RUNNER_SEVERAL_BIBS,
    REVIEW,
    SAME_BIB_TWICE,
)

BY_VERDICT_INDEX = "by_verdict"
# What the digest reads besides the keys (photo, version, verdict, recorded_at are always in
# the index): projecting only these keeps the index a fraction of the photos' full records.
DIGEST_ATTRIBUTES = ("bucket", "key", "reasons", "summary", "links")
ALERT_TYPE = "DIGEST"
# SNS accepts 256 KiB per message, attributes and subject included; the rest is headroom.
MESSAGE_BYTE_BUDGET = 240 * 1024
MAX_LISTED_PHOTOS = 200
# An Express execution lasts at most 5 minutes, so by this long after a window closes every
# record stamped inside it has been written (or its run has failed); the extra minute covers
# the index's propagation. Without it a photo decided just before the window's end, and
# written just after the query, would be in no digest at all.
DIGEST_SETTLE_MINUTES = 6
# Grouping order: evidence that someone else wears the bib first, then the likely misreads.
# A photo is listed once, under the first of these it carries.
GROUP_ORDER = (
    GENDER_MISMATCH,
    ONE_RUNNER_SEVERAL_BIBS,
    SAME_BIB_TWICE,
    AGE_OUTSIDE_CATEGORY,
    BIB_UNREGISTERED,
)
OTHER_GROUP = "OTHER"
BIB_ITEM_PREFIX = "bib#"
FOOTER = "Machine estimates of age and gender are evidence for a human reviewer, not proof."


def timestamp(moment: datetime) -> str:
    """The results table's ``recorded_at`` format, so that string order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return moment.astimezone(UTC)


def digest_window(event_time: str, *, minutes: int,
                  settle_minutes: int = DIGEST_SETTLE_MINUTES) -> tuple[str, str]:
    """The half-open window [start, end) a scheduled run at ``event_time`` reports on.

    Derived from the event's time only, so a retried invocation covers the same window, and
    consecutive runs ``minutes`` apart tile time without gaps or overlaps. Seconds are
    dropped: scheduled events are stamped to the minute, and a late-stamped retry must not
    shift the window.
    """
    end = (parse_timestamp(event_time).replace(second=0, microsecond=0)
           - timedelta(minutes=settle_minutes))
    return timestamp(end - timedelta(minutes=minutes)), timestamp(end)


def last_instant_before(end: str) -> str:
    """The inclusive upper bound for a DynamoDB BETWEEN that means ``< end``.

    ``recorded_at`` has millisecond precision, so one millisecond earlier excludes exactly
    the records that belong to the next window.
    """
    return timestamp(parse_timestamp(end) - timedelta(milliseconds=1))


def _minute(value: str) -> str:
    return parse_timestamp(value).strftime("%Y-%m-%d %H:%M")


def _window_text(window_start: str, window_end: str) -> str:
    start, end = _minute(window_start), _minute(window_end)
    same_day = start[:10] == end[:10]
    return f"{start}-{end[11:] if same_day else end} UTC"


def _group(record: Mapping[str, Any]) -> str:
    reasons = set(record.get("reasons") or [])
    return next((code for code in GROUP_ORDER if code in reasons), OTHER_GROUP)


def _location(record: Mapping[str, Any]) -> str:
    key = str(record.get("key", ""))
    bucket = record.get("bucket")
    return f"s3://{bucket}/{key}" if bucket else key


def _photo_block(record: Mapping[str, Any], review_links: ReviewLinks | None) -> str:
    details = [f"version {record['version']}"] if record.get("version") else []
    if record.get("recorded_at"):
        details.append(f"recorded {record['recorded_at']}")
    heading = _location(record) + (f" ({', '.join(details)})" if details else "")
    lines = [
        heading,
        *(review_links.photo_lines(str(record.get("bucket") or ""), str(record.get("key", "")))
          if review_links and (record.get("bucket") or review_links.local_dir) else []),
        f"Reasons: {', '.join(record.get('reasons') or [])}",
        str(record.get("summary") or ""),
        # Consistent bibs add nothing a reviewer must check.
        *[describe_link(link) for link in record.get("links") or [] if link.get("findings")],
    ]
    return "\n".join(line for line in lines if line)


def compose_digest(records: Sequence[Mapping[str, Any]], *, window_start: str,
                   window_end: str, max_listed: int = MAX_LISTED_PHOTOS,
                   byte_budget: int = MESSAGE_BYTE_BUDGET,
                   review_links: ReviewLinks | None = None) -> dict[str, Any] | None:
    """The digest of the window's REVIEW records, or None when there is none to send.

    Records of other verdicts are ignored, so a caller may pass every result of a run.
    """
    reviews = [record for record in records if record.get("verdict") == REVIEW
               # Per-bib items written before they carried `photo_verdict` instead of
               # `verdict` would otherwise list their photo a second time.
               and not str(record.get("version", "")).startswith(BIB_ITEM_PREFIX)]
    if not reviews:
        return None
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in sorted(reviews, key=lambda r: (str(r.get("recorded_at", "")),
                                                 str(r.get("key", "")))):
        groups.setdefault(_group(record), []).append(record)
    ordered = [code for code in (*GROUP_ORDER, OTHER_GROUP) if code in groups]

    count = len(reviews)
    window = _window_text(window_start, window_end)
    noun = "photo" if count == 1 else "photos"
    subject = f"racecheck REVIEW digest: {count} {noun}, {window}"
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[:SUBJECT_LIMIT]
    header = [
        f"racecheck: {count} {noun} recorded {window} need a person to look "
        f"(verdict REVIEW).",
        "By reason: " + ", ".join(f"{code} {len(groups[code])}" for code in ordered),
    ]
    overflow_reserve = 400  # room for the "and N more" line and the footer
    used = len("\n".join(header).encode("utf-8")) + overflow_reserve
    sections: list[str] = []
    listed = 0
    for code in ordered:
        photos = "photo" if len(groups[code]) == 1 else "photos"
        heading = f"== {code} ({len(groups[code])} {photos}) =="
        used += len(heading) + 2
        blocks = []
        for record in groups[code]:
            block = _photo_block(record, review_links)
            size = len(block.encode("utf-8")) + 2
            if listed >= max_listed or used + size > byte_budget:
                break
            blocks.append(block)
            used += size
            listed += 1
        if blocks:
            sections.append("\n\n".join([heading, *blocks]))
        if len(blocks) < len(groups[code]):
            break
    parts = ["\n".join(header), *sections]
    if listed < count:
        parts.append(
            f"... and {count - listed} more not listed here: query the results table's "
            f"{BY_VERDICT_INDEX} index for verdict {REVIEW} with recorded_at from "
            f"{window_start} up to {window_end}."
        )
    parts.append(FOOTER)
    return {
        "subject": subject,
        "message": "\n\n".join(parts),
        "attributes": {"alert_type": ALERT_TYPE, "verdict": REVIEW, "count": str(count)},
    }
