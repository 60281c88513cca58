"""CheckImage task: locate the photo and check its header without reading the whole file."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import logger, metrics, s3, settings, tracer
from racecheck.core.aws_errors import transient_errors_renamed
from racecheck.core.photo_source import check_photo


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@transient_errors_renamed
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event["detail"]
    photo, image = check_photo(
        s3(),
        bucket=detail["bucket"]["name"],
        delivered_key=detail["object"]["key"],
        version=detail["object"].get("version-id"),
        settings=settings(),
    )
    logger.info("image checked", extra={"photo": photo.photo, "accepted": image.accepted,
                                        "reasons": image.reasons, "bytes_read": image.bytes_read})
    metrics.add_metric(name="ImagesChecked", unit=MetricUnit.Count, value=1)
    if not image.accepted:
        metrics.add_metric(name="ImagesRejected", unit=MetricUnit.Count, value=1)
    return {"photo": photo.to_dict(), "image": image.to_dict()}
