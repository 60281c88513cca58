"""ReadBibs task: Rekognition DetectText, kept to what looks like a race bib."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import logger, metrics, rekognition, settings, take_rekognition_slot, tracer
from racecheck.core.aws_errors import transient_errors_renamed
from racecheck.core.bibs import extract_bibs
from racecheck.core.photo_source import Photo


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@transient_errors_renamed
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    photo = Photo.from_dict(event["photo"])
    take_rekognition_slot("DetectText")
    response = rekognition().detect_text(Image={"S3Object": photo.s3_object()})
    reading = extract_bibs(response, settings())
    logger.info("bibs read", extra={"bibs": [bib["number"] for bib in reading.bibs],
                                    "near_misses": len(reading.near_misses)})
    metrics.add_metric(name="BibsRead", unit=MetricUnit.Count, value=len(reading.bibs))
    return {
        "bibs": reading.bibs,
        "near_misses": reading.near_misses,
        "bib_count": len(reading.bibs),
        "model_version": response.get("TextModelVersion", ""),
    }
