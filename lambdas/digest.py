"""Review digest: on a schedule, one message listing the window's REVIEW photos."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import dynamodb, logger, metrics, required_env, settings, sns, tracer
from racecheck.core.digest import (
    BY_VERDICT_INDEX,
    compose_digest,
    digest_window,
    last_instant_before,
)
from racecheck.core.records import from_attribute_values
from racecheck.core.review_links import ReviewLinks
from racecheck.core.rules import REVIEW


def query_reviews(client: Any, *, table_name: str, first: str, last: str
                  ) -> list[dict[str, Any]]:
    """Every REVIEW record with ``first <= recorded_at <= last``, across all pages."""
    request: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": BY_VERDICT_INDEX,
        "KeyConditionExpression": "#verdict = :verdict AND #recorded_at BETWEEN :first AND :last",
        "ExpressionAttributeNames": {"#verdict": "verdict", "#recorded_at": "recorded_at"},
        "ExpressionAttributeValues": {
            ":verdict": {"S": REVIEW}, ":first": {"S": first}, ":last": {"S": last},
        },
    }
    records: list[dict[str, Any]] = []
    while True:
        page = client.query(**request)
        records += [from_attribute_values(item) for item in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            return records
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The window comes from the event's own time, never the clock: a retry reports the same
    # photos, and a late start does not skip any.
    window_start, window_end = digest_window(
        event["time"], minutes=settings().review_digest_minutes)
    records = query_reviews(dynamodb(), table_name=required_env("RESULTS_TABLE_NAME"),
                            first=window_start, last=last_instant_before(window_end))
    digest = compose_digest(records, window_start=window_start, window_end=window_end,
                            review_links=ReviewLinks.from_env())
    summary: dict[str, Any] = {"window_start": window_start, "window_end": window_end,
                               "count": len(records), "published": digest is not None}
    metrics.add_metric(name="ReviewDigestPhotos", unit=MetricUnit.Count, value=len(records))
    if digest is None:
        logger.info("no REVIEW photos in the window", extra=summary)
        return summary
    attributes = digest["attributes"]
    response = sns().publish(
        TopicArn=required_env("ALERT_TOPIC_ARN"),
        Subject=digest["subject"],
        Message=digest["message"],
        MessageAttributes={
            "alert_type": {"DataType": "String", "StringValue": attributes["alert_type"]},
            "verdict": {"DataType": "String", "StringValue": attributes["verdict"]},
            "count": {"DataType": "Number", "StringValue": attributes["count"]},
        },
    )
    logger.info("review digest published", extra=summary)
    return {**summary, "message_id": response["MessageId"]}
