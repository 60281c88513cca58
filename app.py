#!/usr/bin/env python3
"""CDK app: `cdk synth` / `cdk deploy` (settings in cdk.json context, overridable with -c)."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.racecheck_stack import RacecheckStack

app = cdk.App()
RacecheckStack(app, "Racecheck", description="racecheck: race-photo bib swap and bib mule checks")
# Findings fail synth (exit 1) and land in cdk.out/validation-report.json.
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
