#!/usr/bin/env bash
# CI: synthesize the stack (real local bundling, cdk-nag AwsSolutions) and lint the template.
# Leaves the template in cdk.out/. Extra arguments go to `cdk synth` (e.g. -c notify_sms=...).
set -euo pipefail
cd "$(dirname "$0")/.."
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
node_modules/.bin/cdk synth -q "$@"
# W3005 (redundant DependsOn) is raised by every CDK template.
.venv/bin/cfn-lint cdk.out/*.template.json --ignore-checks W3005
