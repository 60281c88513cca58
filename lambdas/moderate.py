"""Moderate task: Rekognition content moderation against the blocking categories."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import (
    logger,
    metrics,
    rekognition,
    rekognition_rejection,
    settings,
    take_rekognition_slot,
    tracer,
)
from racecheck.core.aws_errors import transient_errors_renamed
from racecheck.core.moderation import assess_moderation
from racecheck.core.photo_source import Photo


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@transient_errors_renamed
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    photo = Photo.from_dict(event["photo"])
    try:
        take_rekognition_slot("DetectModerationLabels")
        response = rekognition().detect_moderation_labels(
            Image={"S3Object": photo.s3_object()},
            MinConfidence=settings().moderation_min_confidence,
        )
    except Exception as error:
        reason = rekognition_rejection(error)
        if reason is None:
            raise
        logger.info("Rekognition refused the image", extra={"reason": reason})
        metrics.add_metric(name="ImagesRefusedByRekognition", unit=MetricUnit.Count, value=1)
        return {"accepted": False, "reasons": [reason], "labels": [], "model_version": ""}
    assessment = assess_moderation(response, settings())
    metrics.add_metric(name="ImagesModerated", unit=MetricUnit.Count, value=1)
    if not assessment["accepted"]:
        metrics.add_metric(name="ImagesBlocked", unit=MetricUnit.Count, value=1)
    return assessment
