"""Shape a photo's decision into what the state machine writes and sends.

The Decide Lambda returns these pieces and the ASL stores them with direct DynamoDB and SNS
integrations, so the item is already in DynamoDB's attribute-value form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from racecheck.core.settings import Settings

NEEDS_HUMAN = ("FAIL", "REVIEW")
SUBJECT_LIMIT = 99  # SNS subjects must stay under 100 characters
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _decimals(value: Any) -> Any:
    """DynamoDB numbers are decimals; floats are rejected by the serializer."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {key: _decimals(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_decimals(item) for item in value]
    return value


def to_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(_decimals(value)) for key, value in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    return value


def from_attribute_values(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(_deserializer.deserialize(value)) for key, value in item.items()}


def describe_link(link: Mapping[str, Any]) -> str:
    """One line per bib: registered vs estimated, and what disagrees."""
    registered = link.get("registered")
    estimated = link.get("estimated")
    if registered:
        upper = registered.get("age_max")
        ages = f"{registered.get('age_min')}-{upper}" if upper is not None else (
            f"{registered.get('age_min')}+")
        name = f" ({registered['name']})" if registered.get("name") else ""
        said = f"registered {registered.get('gender')} {ages}{name}"
    else:
        said = "not registered"
    if estimated:
        seen = (f"estimated {estimated.get('gender')} "
                f"{estimated.get('gender_confidence')}% age "
                f"{estimated.get('age_low')}-{estimated.get('age_high')}")
    else:
        seen = "no face linked"
    findings = ", ".join(link.get("findings") or []) or "consistent"
    if estimated and registered and registered.get("gender") == "X":
        findings += " (gender not compared: registered X)"
    return f"Bib {link.get('bib')}: {said}; {seen}: {findings}"


def alert_for(*, photo: Mapping[str, Any], verdict: str, reasons: list[str], summary: str,
              links: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    bibs = ", ".join(str(link.get("bib")) for link in links) or "no bib"
    # SNS subjects must be ASCII, without line breaks, under 100 characters.
    subject = f"racecheck {verdict}: {bibs} ({', '.join(reasons)})"
    subject = subject.encode("ascii", "replace").decode("ascii").replace("\n", " ")
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 3] + "..."
    lines = [
        f"racecheck verdict {verdict} for s3://{photo['bucket']}/{photo['key']}"
        f" (version {photo['version']})",
        f"Reasons: {', '.join(reasons)}",
        summary,
        "",
        *[describe_link(link) for link in links],
        "",
        "Machine estimates of age and gender are evidence for a human reviewer, not proof.",
    ]
    return {
        "subject": subject,
        "message": "\n".join(lines),
        "reasons_json": json.dumps(reasons),
    }


def evidence_entries(decision: Any) -> list[dict[str, Any]]:
    """Per number in the photo: its outcome for the runner's counters, and who is registered.

    One entry per number (the worst outcome when a number shows twice): a photo counts once
    for a runner. Unregistered numbers are kept too: they feed the by_bib index.
    """
    registered_by_bib = {str(link.get("bib")): link.get("registered") for link in decision.links}
    entries = []
    for evidence in decision.evidence:
        bib = str(evidence.get("bib") or "")
        if not bib:
            continue
        entries.append({
            "bib": bib,
            "outcome": evidence.get("outcome", "unknown"),
            "reasons": list(evidence.get("reasons") or []),
            "registered": registered_by_bib.get(bib),
        })
    return entries


def build_record(*, photo: Mapping[str, Any], decision: Any, image: Mapping[str, Any] | None,
                 moderation: Mapping[str, Any] | None, text: Mapping[str, Any] | None,
                 faces: list[dict[str, Any]] | None, settings: Settings, recorded_at: str,
                 execution: str) -> dict[str, Any]:
    """The photo's record: what was found, the verdict, and what must follow from it.

    ``evidence`` (per bib) and ``alert`` (when a person must be told at once) are what the
    follow-up Lambda acts on when the record appears in the table's stream, so a record
    once written always leads to its index entries, counters and alert.
    """
    verdict: str = decision.verdict
    reasons: list[str] = list(decision.reasons)
    links: list[dict[str, Any]] = [dict(link) for link in decision.links]
    record: dict[str, Any] = {
        "photo": photo["photo"],
        "version": photo["version"],
        "bucket": photo["bucket"],
        "key": photo["key"],
        "verdict": verdict,
        "reasons": reasons,
        "summary": decision.summary,
        "image": dict(image or {}),
        "bibs": list((text or {}).get("bibs", [])),
        "near_misses": list((text or {}).get("near_misses", [])),
        "faces": faces or [],
        "links": links,
        "evidence": evidence_entries(decision),
        "moderation_labels": list((moderation or {}).get("labels", [])),
        "model_versions": {
            "moderation": (moderation or {}).get("model_version", ""),
            "text": (text or {}).get("model_version", ""),
        },
        "thresholds": settings.to_dict(),
        "recorded_at": recorded_at,
        "execution": execution,
    }
    if verdict == "FAIL" or (verdict == "REVIEW" and settings.review_alerts == "each"):
        record["alert"] = alert_for(photo=photo, verdict=verdict, reasons=reasons,
                                    summary=decision.summary, links=links)
    return record
