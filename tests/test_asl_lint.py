"""photo_check.asl.json passes both ASL validators (they catch what cfn-lint misses)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
DEFINITION = REPOSITORY_ROOT / "statemachine" / "photo_check.asl.json"
ASL_VALIDATOR = REPOSITORY_ROOT / "node_modules" / ".bin" / "asl-validator"
STATELINT = REPOSITORY_ROOT / ".venv" / "bin" / "statelint"


def asl_validator(path: Path) -> subprocess.CompletedProcess[str]:
    if not ASL_VALIDATOR.exists() or shutil.which("node") is None:
        pytest.skip(f"{ASL_VALIDATOR} or node missing: run `npm ci` in {REPOSITORY_ROOT}")
    return subprocess.run(
        [str(ASL_VALIDATOR), "--json-path", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )


def statelint(path: Path) -> subprocess.CompletedProcess[str]:
    if not STATELINT.exists():
        pytest.skip(f"{STATELINT} missing: install the dev extras (statelint==3.1.0)")
    return subprocess.run(
        [str(STATELINT), str(path)], capture_output=True, text=True, timeout=120, check=False
    )


def broken_copy(tmp_path: Path) -> Path:
    """The real definition with its first state's transition pointing nowhere."""
    definition = json.loads(DEFINITION.read_text(encoding="utf-8"))
    first = definition["States"][definition["StartAt"]]
    first.pop("End", None)
    first["Next"] = "NoSuchState"
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(definition), encoding="utf-8")
    return broken


def test_given_the_definition_when_asl_validator_runs_then_it_passes() -> None:
    result = asl_validator(DEFINITION)
    assert result.returncode == 0, result.stdout + result.stderr


# statelint 3.1.0's path grammar has no hyphen in names, so it rejects the bracket path
# $.detail.object['version-id'] that S3's EventBridge event requires (asl-validator and Step
# Functions accept it). Only findings on such paths are tolerated.
HYPHENATED_PATH_FIELDS = ("States.RecordError.Item.version",)


def test_given_the_definition_when_statelint_runs_then_only_its_hyphen_gap_remains() -> None:
    result = statelint(DEFINITION)
    # statelint prints a count line ("One error:", "4 errors:"), then one finding per line.
    findings = [line for line in result.stdout.splitlines() if line.startswith(" ")]
    unexpected = [line for line in findings
                  if not any(field in line for field in HYPHENATED_PATH_FIELDS)]
    assert unexpected == [], result.stdout + result.stderr
    hyphenated = json.loads(DEFINITION.read_text(encoding="utf-8"))["States"]["RecordError"]
    assert hyphenated["Parameters"]["Item"]["version"] == {
        "S.$": "$.detail.object['version-id']"}


def test_given_a_dangling_transition_when_validated_then_both_validators_reject_it(
    tmp_path: Path,
) -> None:
    broken = broken_copy(tmp_path)
    assert asl_validator(broken).returncode != 0
    result = statelint(broken)
    assert 'No state found named "NoSuchState"' in result.stdout
