"""Thresholds and rules that tune a check, validated once at the boundary.

The single source of defaults is the ``racecheck`` block of ``cdk.json`` context: the stack
passes it to every Lambda as the ``RACECHECK_SETTINGS`` environment variable, and the local
runner reads the same file. Nothing here has a default, so a missing setting is an error at
start-up rather than a silent fallback inside a handler.

Every setting is declared with its type (the annotation) and its allowed range
(``setting(low, high)``, both ends included), and checked on construction: a wrong type or
a value out of range raises ``SettingsError`` naming the setting, whether the value came
from ``cdk.json``, ``-c racecheck=...`` at synth, or the local run. Adding a setting is one
line: ``name: type = setting(low, high)``, plus its default in ``cdk.json``.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

SETTINGS_ENV_VAR = "RACECHECK_SETTINGS"
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = REPOSITORY_ROOT / "cdk.json"

ReviewAlerts = Literal["each", "digest"]


class SettingsError(ValueError):
    """The configuration is missing, malformed or out of range."""


def setting(low: float | None = None, high: float | None = None, *,
            items: Callable[[str], bool] | None = None, items_are: str = "") -> Any:
    """A setting's allowed range (inclusive) and, for lists, a test every item must pass."""
    return field(metadata={"low": low, "high": high, "items": items, "items_are": items_are})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _has_type(value: Any, expected: Any, spec: Field[Any]) -> bool:
    if isinstance(expected, types.UnionType):
        return any(_has_type(value, option, spec) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if typing.get_origin(expected) is Literal:
        return value in typing.get_args(expected)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return _is_number(value)
    if typing.get_origin(expected) is tuple:
        test = spec.metadata.get("items") or (lambda _item: True)
        return isinstance(value, tuple) and all(isinstance(item, str) and test(item)
                                                for item in value)
    raise TypeError(f"no validation for settings of type {expected!r}")  # a programming error


def _in_range(value: Any, spec: Field[Any]) -> bool:
    low, high = spec.metadata.get("low"), spec.metadata.get("high")
    return not _is_number(value) or ((low is None or value >= low)
                                     and (high is None or value <= high))


def _expectation(expected: Any, spec: Field[Any]) -> str:
    """What the setting must be, in words: ``a whole number within 0..50``."""
    if isinstance(expected, types.UnionType):
        options = [option for option in typing.get_args(expected) if option is not type(None)]
        return " or ".join(_expectation(option, spec) for option in options) + " or null"
    if typing.get_origin(expected) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(expected)))
    if typing.get_origin(expected) is tuple:
        return f"a list of {spec.metadata.get('items_are') or 'texts'}"
    low, high = spec.metadata.get("low"), spec.metadata.get("high")
    text = "a whole number" if expected is int else "a number"
    if low is not None and high is not None:
        return f"{text} within {_bound(low)}..{_bound(high)}"
    if low is not None:
        return f"{text} of at least {_bound(low)}"
    return text


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Image checks (Rekognition accepts JPEG/PNG up to 15 MB from S3 and 10,000 px a side).
    min_image_side_px: int = setting(1, 10_000)
    max_image_side_px: int = setting(1, 10_000)
    max_image_bytes: int = setting(1, 15 * 1024 * 1024)
    max_image_pixels: int = setting(1, 10_000 * 10_000)
    max_pixels_per_byte: float = setting(1, 100_000)
    # Content moderation (Rekognition's MinConfidence runs 0..100).
    moderation_min_confidence: float = setting(0, 100)
    moderation_blocking_categories: tuple[str, ...] = setting(
        items=lambda item: bool(item.strip()), items_are="category names")
    # What counts as a bib.
    bib_min_digits: int = setting(1, 10)
    bib_max_digits: int = setting(1, 10)
    bib_min_value: int | None = setting(0, None)
    bib_max_value: int | None = setting(0, None)
    bib_stop_words: tuple[str, ...] = setting(
        items=lambda item: item.isascii() and item.isdigit(), items_are="numbers")
    bib_min_confidence: float = setting(0, 100)
    bib_min_text_height: float = setting(0, 0.5)
    # Faces and the verdict rules.
    face_min_confidence: float = setting(0, 100)
    face_min_sharpness: float = setting(0, 100)
    face_min_size_px: int = setting(0, 1000)
    age_tolerance_years: int = setting(0, 50)
    age_tolerance_younger_years: int = setting(0, 50)
    gender_fail_confidence: float = setting(50, 100)
    gender_review_confidence: float = setting(50, 100)
    # Evidence across photos.
    suspect_min_inconsistent: int = setting(1, 1000)
    suspect_ratio: float = setting(0, 1000)
    review_alerts: ReviewAlerts = setting()
    review_digest_minutes: int = setting(5, 1440)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        problems = []
        for spec in fields(self):
            value, expected = getattr(self, spec.name), hints[spec.name]
            if not (_has_type(value, expected, spec) and _in_range(value, spec)):
                problems.append(f"{spec.name} must be {_expectation(expected, spec)}, "
                                f"got {value!r}")
        if not problems:
            problems = self._inconsistencies()
        if problems:
            raise SettingsError("; ".join(problems))

    def _inconsistencies(self) -> list[str]:
        """Rules between settings, checked once each has the right type and range."""
        problems = []
        if self.min_image_side_px > self.max_image_side_px:
            problems.append("min_image_side_px must not exceed max_image_side_px")
        if self.bib_min_digits > self.bib_max_digits:
            problems.append("bib_min_digits must not exceed bib_max_digits")
        if (self.bib_min_value is not None and self.bib_max_value is not None
                and self.bib_min_value > self.bib_max_value):
            problems.append("bib_min_value must not exceed bib_max_value")
        if self.gender_review_confidence > self.gender_fail_confidence:
            problems.append("gender_review_confidence must not exceed gender_fail_confidence")
        return problems

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        if not isinstance(raw, Mapping):
            raise SettingsError(f"settings must be an object of name: value, got {raw!r:.60}")
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
