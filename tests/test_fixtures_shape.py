"""Every canned Rekognition response is shaped like the real API's output."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.validate import validate_parameters

from tests.conftest import FIXTURES

OPERATIONS = {"detect_text": "DetectText", "detect_faces": "DetectFaces",
              "detect_moderation": "DetectModerationLabels"}


@pytest.mark.parametrize("path", sorted((FIXTURES / "rekognition").glob("*.json")),
                         ids=lambda path: path.stem)
def test_fixture_matches_the_botocore_output_shape(path) -> None:  # type: ignore[no-untyped-def]
    operation = next(op for prefix, op in OPERATIONS.items() if path.stem.startswith(prefix))
    model = boto3.client("rekognition", region_name="us-east-1").meta.service_model
    validate_parameters(json.loads(path.read_text()), model.operation_model(operation).output_shape)
