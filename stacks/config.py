"""Deployment settings read from CDK context (``cdk.json`` or ``-c key=value``), validated at synth.

``cdk.json`` holds the only defaults. Values given with ``-c`` arrive as strings, so every
reader accepts both the JSON type and its string form. A bad value raises ``ConfigError``
naming the context key, which makes ``cdk synth`` fail before anything is deployed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from racecheck.core.settings import Settings, SettingsError
from racecheck.core.throughput import Throughput

# E.164: a plus sign, then up to 15 digits, no leading zero (what SNS SMS accepts).
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# Deliberately loose: SNS confirms the address by mail; this only catches typos like a
# missing "@" or a stray separator.
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


class ConfigError(ValueError):
    """A CDK context value is missing or malformed."""


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    settings: Settings
    ingest_prefix: str
    photo_expiry_days: int
    notify_emails: tuple[str, ...]
    notify_sms_numbers: tuple[str, ...]
    throughput: Throughput
    queue_age_alarm_minutes: int

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> StackConfig:
        """Build from a context getter such as ``construct.node.try_get_context``."""
        return cls(
            settings=_settings(get("racecheck")),
            ingest_prefix=_ingest_prefix(get("ingest_prefix")),
            photo_expiry_days=_expiry_days(get("photo_expiry_days")),
            notify_emails=_split_list(get("notify_email"), "notify_email", _EMAIL),
            notify_sms_numbers=_split_list(get("notify_sms"), "notify_sms", _E164),
            throughput=throughput_from_context(get),
            queue_age_alarm_minutes=int(_number(get, "queue_age_alarm_minutes", 1, 24 * 60,
                                                whole=True)),
        )


def throughput_from_context(get: Callable[[str], Any]) -> Throughput:
    """The queue's pace and patience: ``rekognition_tps`` and the settings that follow it."""
    return Throughput(
        rekognition_tps=_number(get, "rekognition_tps", 0.1, 10_000),
        photo_check_seconds=_number(get, "photo_check_seconds", 0.5, 300),
        max_receives=int(_number(get, "queue_max_receives", 2, 1000, whole=True)),
        requeue_delay_seconds=int(_number(get, "requeue_delay_seconds", 0, 900, whole=True)),
    )


def _number(get: Callable[[str], Any], key: str, low: float, high: float, *,
            whole: bool = False) -> float:
    raw = get(key)
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = float("nan")
    if raw is None or not low <= value <= high or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"context '{key}' must be {kind} within {low:g}..{high:g}, got {raw!r}")
    return value


def _settings(raw: Any) -> Settings:
    if raw is None:
        raise ConfigError(
            "context 'racecheck' is missing: synthesize with the CDK CLI (it passes cdk.json "
            "context), e.g. `node_modules/.bin/cdk synth`, not `python app.py` alone"
        )
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ConfigError(f"context 'racecheck' is not valid JSON: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError("context 'racecheck' must be an object of settings (see cdk.json)")
    try:
        return Settings.from_mapping(_restore_nulls(raw))
    except SettingsError as error:
        raise ConfigError(f"context 'racecheck' is invalid: {error}") from error


def _restore_nulls(raw: dict[str, Any]) -> dict[str, Any]:
    # jsii drops null members of context objects on their way back to Python, so
    # `"bib_min_value": null` in cdk.json arrives as a missing key. Only fields that accept
    # None are restored; any other missing setting still fails validation.
    nullable = {field.name for field in fields(Settings) if "None" in str(field.type)}
    return {**dict.fromkeys(nullable - set(raw)), **raw}


def _ingest_prefix(raw: Any) -> str:
    prefix = "" if raw is None else str(raw)
    if prefix.startswith("/"):
        raise ConfigError("context 'ingest_prefix' is an S3 key prefix and must not start with '/'")
    return prefix


def _expiry_days(raw: Any) -> int:
    text = "0" if raw in (None, "") else str(raw).strip()
    if not text.isdigit():
        raise ConfigError(
            f"context 'photo_expiry_days' must be a whole number of days (0 = keep), got {raw!r}"
        )
    return int(text)


def _split_list(raw: Any, key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else str(raw).split(",")
    values = tuple(str(item).strip() for item in items if str(item).strip())
    invalid = [value for value in values if not pattern.match(value)]
    if invalid:
        raise ConfigError(f"context '{key}' has invalid entries: {', '.join(invalid)}")
    return values
