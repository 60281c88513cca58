"""Every setting is checked for its type and range, for the stack and the local run alike."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest

from racecheck.core.settings import Settings, SettingsError
from stacks.config import ConfigError, StackConfig
from stacks.testing import cdk_json_context

DEFAULTS = Settings.from_cdk_json().to_dict()


def _stack_config(settings: dict[str, Any]) -> StackConfig:
    context = {**cdk_json_context(), "racecheck": settings}
    return StackConfig.from_context(context.get)


@pytest.mark.parametrize(("name", "value", "message"), [
    # The four bad values the issue found accepted.
    ("face_min_confidence", "high", "face_min_confidence must be a number within 0..100"),
    ("age_tolerance_years", -50, "age_tolerance_years must be a whole number within 0..50"),
    ("bib_min_value", "x", "bib_min_value must be a whole number of at least 0 or null"),
    ("max_pixels_per_byte", 0, "max_pixels_per_byte must be a number within 1..100000"),
    # One of each kind.
    ("min_image_side_px", 12.5, "min_image_side_px must be a whole number"),
    ("suspect_ratio", True, "suspect_ratio must be a number"),
    ("bib_min_text_height", float("nan"), "bib_min_text_height must be a number"),
    ("review_alerts", "never", "review_alerts must be one of 'each', 'digest'"),
    ("bib_stop_words", ["20x6"], "bib_stop_words must be a list of numbers"),
    ("moderation_blocking_categories", "Explicit", "moderation_blocking_categories must be"),
    ("gender_fail_confidence", 101, "gender_fail_confidence must be a number within 50..100"),
])
def test_given_a_bad_setting_when_loaded_then_the_error_names_it_and_its_range(
        name: str, value: Any, message: str) -> None:
    # Given: the defaults with one bad value
    settings = {**DEFAULTS, name: value}
    # When / Then: the local run's loader and the stack's both refuse it by name
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Settings.from_mapping(settings)
    with pytest.raises(ConfigError, match=f"context 'racecheck' is invalid: .*{name}"):
        _stack_config(settings)


def test_given_every_setting_at_a_wrong_type_then_each_one_is_refused() -> None:
    # Given: every setting, in turn, set to a value of no setting's type
    for field in dataclasses.fields(Settings):
        # When / Then
        with pytest.raises(SettingsError, match=field.name):
            Settings.from_mapping({**DEFAULTS, field.name: {"a": "mapping"}})


def test_given_every_bounded_setting_just_outside_its_range_then_it_is_refused() -> None:
    checked = 0
    for field in dataclasses.fields(Settings):
        low, high = field.metadata.get("low"), field.metadata.get("high")
        for outside in ([low - 1] if low is not None else []) + (
                [high + 1] if high is not None else []):
            with pytest.raises(SettingsError, match=field.name):
                Settings.from_mapping({**DEFAULTS, field.name: outside})
            checked += 1
    assert checked >= 20


def test_given_settings_at_their_bounds_then_they_are_accepted() -> None:
    # Given: every bounded setting at its low end (a race may well want the extremes)
    hints = typing.get_type_hints(Settings)
    lows = {field.name: field.metadata["low"] for field in dataclasses.fields(Settings)
            if field.metadata.get("low") is not None}
    values = {name: (int(low) if hints[name] in (int, int | None) else float(low))
              for name, low in lows.items()}
    # Rules between settings still hold at the low ends.
    values["max_image_side_px"] = DEFAULTS["max_image_side_px"]
    values["bib_max_digits"] = DEFAULTS["bib_max_digits"]
    values["gender_fail_confidence"] = DEFAULTS["gender_fail_confidence"]
    # When
    settings = Settings.from_mapping({**DEFAULTS, **values})
    # Then
    assert settings.age_tolerance_years == 0
    assert settings.bib_min_value == 0


def test_given_settings_that_contradict_each_other_then_the_pair_is_named() -> None:
    with pytest.raises(SettingsError, match="bib_min_value must not exceed bib_max_value"):
        Settings.from_mapping({**DEFAULTS, "bib_min_value": 500, "bib_max_value": 100})
    with pytest.raises(SettingsError, match="min_image_side_px must not exceed"):
        Settings.from_mapping({**DEFAULTS, "min_image_side_px": 4000,
                               "max_image_side_px": 3000})


def test_given_several_bad_settings_then_all_are_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_mapping({**DEFAULTS, "age_tolerance_years": -1,
                               "review_digest_minutes": 0})
    assert "age_tolerance_years" in str(error.value)
    assert "review_digest_minutes" in str(error.value)


def test_given_the_lambda_environment_when_its_json_is_not_an_object_then_it_is_refused(
) -> None:
    with pytest.raises(SettingsError, match="object"):
        Settings.from_env({"RACECHECK_SETTINGS": json.dumps([1, 2])})


def test_given_a_cli_string_for_the_whole_block_then_its_values_are_checked_too() -> None:
    # Given: `cdk synth -c racecheck='{...}'` arrives as one JSON string
    context = {**cdk_json_context(),
               "racecheck": json.dumps({**DEFAULTS, "face_min_sharpness": 150})}
    # When / Then
    with pytest.raises(ConfigError, match=r"face_min_sharpness must be a number within 0\.\.100"):
        StackConfig.from_context(context.get)
