"""AnalyzeFaces task: Rekognition DetectFaces, reduced to derived attributes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.shared import logger, metrics, rekognition, take_rekognition_slot, tracer
from racecheck.core.aws_errors import transient_errors_renamed
from racecheck.core.faces import FACE_ATTRIBUTES, faces_from_rekognition
from racecheck.core.photo_source import Photo


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@transient_errors_renamed
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    photo = Photo.from_dict(event["photo"])
    take_rekognition_slot("DetectFaces")
    response = rekognition().detect_faces(Image={"S3Object": photo.s3_object()},
                                          Attributes=FACE_ATTRIBUTES)
    faces = faces_from_rekognition(response)
    # Face attributes are personal data: log how many, never what.
    logger.info("faces analyzed", extra={"face_count": len(faces)})
    metrics.add_metric(name="FacesAnalyzed", unit=MetricUnit.Count, value=len(faces))
    return {"faces": faces, "face_count": len(faces)}
