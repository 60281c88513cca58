"""Reduce a DetectFaces response to the derived attributes racecheck keeps.

Face data is biometric: only the box, the age range, the gender estimate and quality hints
(sunglasses, occlusion, sharpness, brightness, how far the face is turned: yaw and pitch)
are kept. Landmarks, roll, crops and embeddings are dropped here, before anything is stored
or logged.
"""

from __future__ import annotations

from typing import Any

# What DetectFaces is asked for: DEFAULT gives the box and quality, the rest are the
# attributes the verdict rules read (Rekognition's Attributes enum spells them this way).
FACE_ATTRIBUTES = ["DEFAULT", "AGE_RANGE", "GENDER", "SUNGLASSES", "FACE_OCCLUDED"]


def _flag(detail: dict[str, Any], name: str) -> bool | None:
    value = detail.get(name)
    return bool(value["Value"]) if isinstance(value, dict) and "Value" in value else None


def face_from_detail(detail: dict[str, Any]) -> dict[str, Any]:
    box = detail["BoundingBox"]
    age = detail.get("AgeRange") or {}
    gender = detail.get("Gender") or {}
    quality = detail.get("Quality") or {}
    pose = detail.get("Pose") or {}
    return {
        "box": {key: round(float(box[key]), 5) for key in ("Left", "Top", "Width", "Height")},
        "confidence": round(float(detail.get("Confidence", 0.0)), 2),
        "age_low": age.get("Low"),
        "age_high": age.get("High"),
        "gender": gender.get("Value"),
        "gender_confidence": round(float(gender["Confidence"]), 2) if gender else None,
        "sunglasses": _flag(detail, "Sunglasses"),
        "occluded": _flag(detail, "FaceOccluded"),
        "sharpness": round(float(quality["Sharpness"]), 2) if "Sharpness" in quality else None,
        "brightness": (round(float(quality["Brightness"]), 2)
                       if "Brightness" in quality else None),
        # How far the face is turned: estimates of a face in profile are poor.
        "yaw": round(float(pose["Yaw"]), 1) if "Yaw" in pose else None,
        "pitch": round(float(pose["Pitch"]), 1) if "Pitch" in pose else None,
    }


def faces_from_rekognition(response: dict[str, Any]) -> list[dict[str, Any]]:
    """Faces in Rekognition's order (largest first is not guaranteed; keep it stable)."""
    return [face_from_detail(detail) for detail in response.get("FaceDetails", [])]
