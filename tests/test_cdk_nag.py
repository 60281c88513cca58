"""cdk-nag AwsSolutions on the racecheck stack, through cdk.Validations (cdk-nag 3.x)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cdk_nag", reason="CDK extras not installed (pip install -e '.[cdk]')")

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from stacks.racecheck_stack import RacecheckStack
from stacks.testing import build_app

Finding = tuple[str, str]  # (rule id, construct path)
# Reasons that explain nothing; an acknowledgment must say why the finding cannot be fixed.
GENERIC_REASONS = ("suppress", "false positive", "not needed", "n/a", "todo", "ignore", "ok")


def synth_with_nag(app: cdk.App, outdir: Path) -> set[Finding]:
    """Synthesizes with AwsSolutions checks; returns the unacknowledged findings."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except Exception:  # jsii surfaces the validation failure as a generic error
        report_path = outdir / "validation-report.json"
        if not report_path.exists():
            raise
        report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
        return {
            (violation["ruleName"], construct["constructPath"])
            for plugin in report["pluginReports"]
            for violation in plugin["violations"]
            for construct in violation["violatingConstructs"]
        }
    return set()


@pytest.fixture(scope="module")
def acknowledged(tmp_path_factory: pytest.TempPathFactory) -> tuple[RacecheckStack, set[Finding]]:
    outdir = tmp_path_factory.mktemp("nag-acknowledged")
    app, stack = build_app(outdir=outdir)
    return stack, synth_with_nag(app, outdir)


@pytest.fixture(scope="module")
def raw_findings(tmp_path_factory: pytest.TempPathFactory) -> set[Finding]:
    outdir = tmp_path_factory.mktemp("nag-raw")
    app, _ = build_app(outdir=outdir, acknowledge_nag_findings=False)
    return synth_with_nag(app, outdir)


def covers(scope_path: str, finding_path: str) -> bool:
    return finding_path == scope_path or finding_path.startswith(scope_path + "/")


def test_given_a_non_compliant_bucket_when_checked_then_the_harness_reports_it(
    tmp_path: Path,
) -> None:
    # Control: proves that an empty result below means "no findings", not "no checks".
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Bare")
    s3.Bucket(stack, "Open")

    findings = synth_with_nag(app, tmp_path)

    rules = {rule for rule, _ in findings}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def test_given_the_stack_when_checked_then_no_finding_is_left_unacknowledged(
    acknowledged: tuple[RacecheckStack, set[Finding]],
) -> None:
    _, findings = acknowledged
    assert findings == set()


def test_given_the_acknowledgments_then_each_one_matches_a_real_finding(
    acknowledged: tuple[RacecheckStack, set[Finding]], raw_findings: set[Finding]
) -> None:
    stack, _ = acknowledged
    assert raw_findings, "without acknowledgments cdk-nag must report the known findings"
    for acknowledgment in stack.nag_acknowledgments:
        scope = acknowledgment.scope.node.path
        matched = [
            path
            for rule, path in raw_findings
            if rule == acknowledgment.rule and covers(scope, path)
        ]
        assert matched, f"stale acknowledgment {acknowledgment.rule} on {scope}"


def test_given_the_raw_findings_then_only_the_accepted_rules_occur(
    raw_findings: set[Finding],
) -> None:
    # A new kind of finding must be fixed or argued for, not swept in by a broad scope.
    rules = {rule.split("[")[0] for rule, _ in raw_findings}
    assert rules <= {"AwsSolutions-IAM5", "AwsSolutions-L1", "AwsSolutions-SQS3"}


def test_given_the_acknowledgments_then_each_reason_is_specific(
    acknowledged: tuple[RacecheckStack, set[Finding]],
) -> None:
    stack, _ = acknowledged
    assert stack.nag_acknowledgments
    for acknowledgment in stack.nag_acknowledgments:
        reason = acknowledgment.reason
        assert len(reason) >= 80, f"{acknowledgment.rule}: reason too short: {reason!r}"
        assert reason.strip().lower() not in GENERIC_REASONS
        if acknowledgment.rule.startswith("AwsSolutions-IAM5"):
            # A wildcard acknowledgment names the actions or resources it is about.
            assert ":" in reason and ("*" in reason or "resource" in reason.lower())
