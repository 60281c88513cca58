"""The Express state machine that checks one photo, defined by statemachine/photo_check.asl.json."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.functions import LOG_RETENTION

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def definition_placeholders(definition: str) -> set[str]:
    return set(_PLACEHOLDER.findall(definition))


def check_substitutions(definition: str, substitutions: Mapping[str, str], source: Path) -> None:
    """Fail synth when the ASL file and the stack disagree about ``${...}`` placeholders."""
    placeholders = definition_placeholders(definition)
    missing = sorted(placeholders - set(substitutions))
    unused = sorted(set(substitutions) - placeholders)
    if missing or unused:
        raise ValueError(
            f"{source}: definition substitutions do not match the placeholders "
            f"(not provided by the stack: {missing or 'none'}; "
            f"not used by the definition: {unused or 'none'})"
        )


class PhotoWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        definition_path: Path,
        substitutions: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)

        definition = definition_path.read_text(encoding="utf-8")
        check_substitutions(definition, substitutions, definition_path)

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            # The /aws/vendedlogs/ prefix keeps CloudWatch's log resource policy small.
            log_group_name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}-photo-check",
            retention=LOG_RETENTION,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            # Inline (DefinitionString), so cfn-lint and template tests can read it.
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions=dict(substitutions),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ALL,
                # Execution data holds face attributes (personal data): off by default.
                include_execution_data=False,
            ),
        )
