"""Thresholds and rules that tune a check, validated once at the boundary.

The single source of defaults is the ``racecheck`` block of ``cdk.json`` context: the stack
passes it to every Lambda as the ``RACECHECK_SETTINGS`` environment variable, and the local
runner reads the same file. Nothing here has a default, so a missing setting is an error at
start-up rather than a silent fallback inside a handler.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

SETTINGS_ENV_VAR = "RACECHECK_SETTINGS"
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = REPOSITORY_ROOT / "cdk.json"

ReviewAlerts = Literal["each", "digest"]


class SettingsError(ValueError):
    """The configuration is missing, malformed or out of range."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Image checks (Rekognition accepts JPEG/PNG up to 15 MB from S3 and 10,000 px a side).
    min_image_side_px: int
    max_image_side_px: int
    max_image_bytes: int
    max_image_pixels: int
    max_pixels_per_byte: float
    # Content moderation.
    moderation_min_confidence: float
    moderation_blocking_categories: tuple[str, ...]
    # What counts as a bib.
    bib_min_digits: int
    bib_max_digits: int
    bib_min_value: int | None
    bib_max_value: int | None
    bib_stop_words: tuple[str, ...]
    bib_min_confidence: float
    bib_min_text_height: float
    # Faces and the verdict rules.
    face_min_confidence: float
    face_min_sharpness: float
    age_tolerance_years: int
    age_tolerance_younger_years: int
    gender_fail_confidence: float
    gender_review_confidence: float
    # Evidence across photos.
    suspect_min_inconsistent: int
    suspect_ratio: float
    review_alerts: ReviewAlerts
    review_digest_minutes: int

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.min_image_side_px <= self.max_image_side_px:
            problems.append("min_image_side_px must be between 1 and max_image_side_px")
        if not 0 <= self.moderation_min_confidence <= 100:
            problems.append("moderation_min_confidence must be within 0..100")
        if not 1 <= self.bib_min_digits <= self.bib_max_digits:
            problems.append("bib_min_digits must be between 1 and bib_max_digits")
        if not 0 <= self.bib_min_confidence <= 100:
            problems.append("bib_min_confidence must be within 0..100")
        if not 0 <= self.bib_min_text_height < 1:
            problems.append("bib_min_text_height is a fraction of the image height (0..1)")
        if not 50 <= self.gender_fail_confidence <= 100:
            problems.append("gender_fail_confidence must be within 50..100")
        if self.gender_review_confidence > self.gender_fail_confidence:
            problems.append("gender_review_confidence must not exceed gender_fail_confidence")
        if self.suspect_min_inconsistent < 1 or self.suspect_ratio < 0:
            problems.append("suspect_min_inconsistent >= 1 and suspect_ratio >= 0 required")
        if self.review_alerts not in ("each", "digest"):
            problems.append("review_alerts must be 'each' or 'digest'")
        if not 5 <= self.review_digest_minutes <= 1440:
            problems.append("review_digest_minutes must be within 5..1440")
        if problems:
            raise SettingsError("; ".join(problems))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        known = {field.name: field for field in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        missing = sorted(set(known) - set(raw))
        if unknown or missing:
            raise SettingsError(
                f"settings mismatch: missing {missing or 'none'}, unknown {unknown or 'none'}"
            )
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if isinstance(value, list):
                value = tuple(str(item) for item in value)
            values[name] = value
        try:
            return cls(**values)
        except TypeError as error:
            raise SettingsError(str(error)) from error

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        raw = environ.get(SETTINGS_ENV_VAR)
        if not raw:
            raise SettingsError(f"environment variable {SETTINGS_ENV_VAR} is not set")
        try:
            return cls.from_mapping(json.loads(raw))
        except json.JSONDecodeError as error:
            raise SettingsError(f"{SETTINGS_ENV_VAR} is not valid JSON: {error}") from error

    @classmethod
    def from_cdk_json(cls, path: Path = CDK_JSON, overrides: Mapping[str, Any] | None = None
                      ) -> Settings:
        context = json.loads(path.read_text(encoding="utf-8"))["context"]["racecheck"]
        return cls.from_mapping({**context, **(overrides or {})})

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
