"""Decide task: links bibs to faces, compares with the registration list, shapes the record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import dynamodb, logger, metrics, required_env, settings, tracer
from racecheck.core.aws_errors import transient_errors_renamed
from racecheck.core.records import build_record, to_attribute_values
from racecheck.core.rules import decide_photo
from racecheck.core.runners_store import load_runners


def _result(state: dict[str, Any], step: str) -> dict[str, Any] | None:
    """A step's Lambda payload, or None when the workflow skipped that step."""
    value = state.get(step)
    return value.get("result") if isinstance(value, dict) else None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@transient_errors_renamed
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = event["state"]
    checked = _result(state, "check") or {}
    photo, image = checked["photo"], checked["image"]
    moderation = _result(state, "moderation")
    text = _result(state, "text")
    faces_result = _result(state, "faces")
    faces = faces_result["faces"] if faces_result is not None else None
    bibs = text["bibs"] if text is not None else None

    numbers = sorted({bib["number"] for bib in bibs or []})
    runners = load_runners(numbers, table_name=required_env("RUNNERS_TABLE_NAME"),
                           dynamodb_client=dynamodb()) if numbers else {}
    decision = decide_photo(
        image=image, moderation=moderation, bibs=bibs, faces=faces, runners=runners,
        settings=settings(), image_width=image.get("width"), image_height=image.get("height"),
    )
    metrics.add_metric(name="PhotosDecided", unit=MetricUnit.Count, value=1)
    logger.info("photo decided", extra={"verdict": decision.verdict,
                                        "reasons": decision.reasons})
    record = build_record(
        photo=photo, decision=decision, image=image, moderation=moderation, text=text,
        faces=faces, settings=settings(),
        recorded_at=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        execution=event.get("execution", ""),
    )
    # This result replaces the workflow's state (ResultPath "$"): the event, for the error
    # path, and the record; the step results it was built from are not carried twice.
    return {"detail": state["detail"],
            "decision": {"verdict": decision.verdict, "item": to_attribute_values(record)}}
