"""Template tests for the racecheck stack (offline: no AWS, no Docker, bundling skipped)."""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aws_cdk", reason="CDK extras not installed (pip install -e '.[cdk]')")

from aws_cdk.assertions import Match, Template

from racecheck.core.digest import compose_digest
from racecheck.core.settings import Settings
from stacks.bundling import copy_sources, pip_install_command
from stacks.config import ConfigError, StackConfig
from stacks.constructs.workflow import check_substitutions, definition_placeholders
from stacks.racecheck_stack import DEFINITION_PATH, REPOSITORY_ROOT
from stacks.testing import build_app, cdk_json_context

PLACEHOLDERS = {
    "CheckImageFunctionArn",
    "ModerateFunctionArn",
    "ReadBibsFunctionArn",
    "AnalyzeFacesFunctionArn",
    "DecideFunctionArn",
    "ResultsTableName",
}
# Actions AWS documents as supporting no resource-level permissions: the only "*" resources.
WILDCARD_RESOURCE_ACTIONS = {
    "rekognition:DetectModerationLabels",
    "rekognition:DetectText",
    "rekognition:DetectFaces",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "dynamodb:ListStreams",
}
# ASL service integration -> the IAM action it needs.
INTEGRATION_ACTIONS = {
    "arn:aws:states:::lambda:invoke": "lambda:InvokeFunction",
    "arn:aws:states:::dynamodb:getItem": "dynamodb:GetItem",
    "arn:aws:states:::dynamodb:putItem": "dynamodb:PutItem",
    "arn:aws:states:::dynamodb:updateItem": "dynamodb:UpdateItem",
    "arn:aws:states:::sns:publish": "sns:Publish",
}
CUSTOM_CONTEXT = {
    "ingest_prefix": "uploads/",
    "photo_expiry_days": "30",
    "notify_email": "a@b.org, c@d.org",
    "notify_sms": "+15551234567",
}


@pytest.fixture(scope="module")
def default_template() -> Template:
    _, stack = build_app()
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def custom_template() -> Template:
    _, stack = build_app(context_overrides=CUSTOM_CONTEXT)
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def resources(default_template: Template) -> dict[str, Any]:
    return dict(default_template.to_json()["Resources"])


def of_type(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {key: value for key, value in resources.items() if value["Type"] == resource_type}


def the_one(resources: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    matches = of_type(resources, resource_type)
    assert len(matches) == 1, f"expected one {resource_type}, found {sorted(matches)}"
    return next(iter(matches.items()))


def logical_id(value: Any) -> str:
    """Ref / GetAtt / Join(<GetAtt>, "/*") -> the logical id, with "/*" kept as a suffix."""
    if value == "*":
        return "*"
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        assert separator == "" and len(parts) == 2, value
        return logical_id(parts[0]) + str(parts[1])
    raise AssertionError(f"unexpected resource reference {value!r}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(policy: dict[str, Any]) -> set[tuple[str, str]]:
    """(action, resource logical id) pairs allowed by one AWS::IAM::Policy."""
    pairs = set()
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                pairs.add((action, logical_id(resource)))
    return pairs


def policy_of_role(resources: dict[str, Any], role_id: str) -> dict[str, Any]:
    policies = [
        policy
        for policy in of_type(resources, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]
    assert len(policies) == 1, f"{role_id} should have exactly one policy"
    return policies[0]


def function_id(resources: dict[str, Any], module: str) -> str:
    for key, value in of_type(resources, "AWS::Lambda::Function").items():
        if value["Properties"]["Handler"] == f"lambdas.{module}.handler":
            return key
    raise AssertionError(f"no function for lambdas.{module}")


def function_grants(resources: dict[str, Any], module: str) -> set[tuple[str, str]]:
    function = resources[function_id(resources, module)]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    # The function's log group is its own, so logs grants must point at exactly that one.
    log_group = logical_id(function["Properties"]["LoggingConfig"]["LogGroup"])
    found = grants(policy_of_role(resources, role_id))
    own_logs = {("logs:CreateLogStream", log_group), ("logs:PutLogEvents", log_group)}
    assert own_logs <= found
    return found - own_logs


def asl_task_resources(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(integration ARN, Parameters) for every Task state, including inside Map/Parallel."""
    if isinstance(node, dict):
        if node.get("Type") == "Task":
            yield node["Resource"], node.get("Parameters") or node.get("Arguments") or {}
        for value in node.values():
            yield from asl_task_resources(value)
    elif isinstance(node, list):
        for value in node:
            yield from asl_task_resources(value)


# --- resources ------------------------------------------------------------------------------


def test_given_default_context_when_synthesized_then_resource_counts_match_the_design(
    default_template: Template,
) -> None:
    expected = {
        "AWS::Lambda::Function": 9,
        "AWS::Lambda::Permission": 1,
        "AWS::Lambda::EventSourceMapping": 3,
        "AWS::StepFunctions::StateMachine": 1,
        "AWS::DynamoDB::Table": 4,
        "AWS::S3::Bucket": 2,
        "AWS::SNS::Topic": 1,
        "AWS::SNS::Subscription": 0,
        "AWS::SQS::Queue": 3,
        "AWS::Events::Rule": 2,
        "AWS::KMS::Key": 1,
        "AWS::Logs::LogGroup": 10,
        "AWS::CloudWatch::Alarm": 6,
        "AWS::CloudWatch::Dashboard": 1,
    }
    for resource_type, count in expected.items():
        default_template.resource_count_is(resource_type, count)


def test_given_the_stack_then_no_custom_resource_lambdas_are_hidden_in_it(
    resources: dict[str, Any],
) -> None:
    custom = [key for key, value in resources.items() if value["Type"].startswith("Custom::")]
    assert custom == []


def test_given_the_state_machine_then_it_is_express_traced_and_logs_without_execution_data(
    resources: dict[str, Any],
) -> None:
    _, machine = the_one(resources, "AWS::StepFunctions::StateMachine")
    properties = machine["Properties"]
    assert properties["StateMachineType"] == "EXPRESS"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    logging = properties["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is False
    log_group_id = logical_id(logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"])
    assert resources[log_group_id]["Type"] == "AWS::Logs::LogGroup"
    assert resources[log_group_id]["Properties"]["RetentionInDays"] > 0


def test_given_the_asl_file_then_the_template_holds_it_inline_unchanged(
    resources: dict[str, Any],
) -> None:
    _, machine = the_one(resources, "AWS::StepFunctions::StateMachine")
    definition = machine["Properties"]["DefinitionString"]
    assert isinstance(definition, str), "definition must be inline, not an S3 asset"
    assert json.loads(definition) == json.loads(DEFINITION_PATH.read_text(encoding="utf-8"))


def test_given_the_definition_then_every_placeholder_is_substituted(
    resources: dict[str, Any],
) -> None:
    _, machine = the_one(resources, "AWS::StepFunctions::StateMachine")
    definition = machine["Properties"]["DefinitionString"]
    substitutions = machine["Properties"]["DefinitionSubstitutions"]

    assert definition_placeholders(definition) == PLACEHOLDERS == set(substitutions)
    substituted = definition
    for name in substitutions:
        substituted = substituted.replace("${" + name + "}", f"resolved-{name}")
    assert "${" not in substituted


def test_given_a_definition_with_an_unknown_placeholder_when_checked_then_synth_fails(
    tmp_path: Path,
) -> None:
    asl = tmp_path / "photo_check.asl.json"
    asl.write_text(
        DEFINITION_PATH.read_text(encoding="utf-8").replace(
            "${DecideFunctionArn}", "${DecideFunctionArnTypo}"
        )
    )

    with pytest.raises(ValueError, match="DecideFunctionArnTypo") as raised:
        build_app(definition_path=asl)
    assert "DecideFunctionArn" in str(raised.value)


def test_given_placeholders_when_checked_then_missing_and_unused_ones_are_named() -> None:
    definition = '{"a": "${One}", "b": "${Two}"}'
    check_substitutions(definition, {"One": "1", "Two": "2"}, Path("ok.json"))
    with pytest.raises(ValueError, match=r"not provided by the stack: \['Two'\]"):
        check_substitutions(definition, {"One": "1"}, Path("x.json"))
    with pytest.raises(ValueError, match=r"not used by the definition: \['Three'\]"):
        check_substitutions(definition, {"One": "1", "Two": "2", "Three": "3"}, Path("x.json"))


# --- trigger ---------------------------------------------------------------------------------


def trigger_rule(resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The S3 "Object Created" rule (the other rule is the digest's schedule)."""
    rules = {
        key: rule
        for key, rule in of_type(resources, "AWS::Events::Rule").items()
        if "EventPattern" in rule["Properties"]
    }
    assert len(rules) == 1, sorted(rules)
    return next(iter(rules.items()))



def test_given_default_context_then_the_rule_matches_every_object_created_in_the_bucket(
    resources: dict[str, Any],
) -> None:
    _, rule = trigger_rule(resources)
    bucket_id = logical_id_of_ingest_bucket(resources)
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [{"Ref": bucket_id}]}},
    }


def test_given_an_ingest_prefix_then_the_rule_filters_on_it_and_not_on_a_suffix(
    custom_template: Template,
) -> None:
    custom_template.has_resource_properties(
        "AWS::Events::Rule",
        {"EventPattern": {"detail": {"object": {"key": [{"prefix": "uploads/"}]}}}},
    )


def queue_by_role(resources: dict[str, Any]) -> dict[str, str]:
    """Logical ids of the ingest queue, its dead-letter queue and the follow-up's."""
    queues = of_type(resources, "AWS::SQS::Queue")
    (ingest_id,) = [key for key, queue in queues.items()
                    if "RedrivePolicy" in queue["Properties"]]
    dead_letters_id = logical_id(
        queues[ingest_id]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
    (follow_up_id,) = set(queues) - {ingest_id, dead_letters_id}
    return {"ingest": ingest_id, "dead_letters": dead_letters_id, "follow_up": follow_up_id}


def test_given_the_rule_then_every_event_is_queued_with_retries_and_a_dlq(
    resources: dict[str, Any],
) -> None:
    _, rule = trigger_rule(resources)
    queues = queue_by_role(resources)
    (target,) = rule["Properties"]["Targets"]
    # the event goes to the ingest queue, whole (the ASL reads detail.bucket/detail.object)
    assert logical_id(target["Arn"]) == queues["ingest"]
    assert "Input" not in target and "InputPath" not in target
    # and a delivery that keeps failing waits in the DLQ rather than vanishing
    assert logical_id(target["DeadLetterConfig"]["Arn"]) == queues["dead_letters"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 185
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 24 * 3600


def test_given_the_queues_then_they_are_encrypted_tls_only_and_redrive_after_max_receives(
    resources: dict[str, Any],
) -> None:
    queues = queue_by_role(resources)
    context = cdk_json_context()
    ingest = resources[queues["ingest"]]["Properties"]
    assert ingest["RedrivePolicy"]["maxReceiveCount"] == context["queue_max_receives"]
    # six times the consumer's timeout, as AWS advises for an SQS event source
    consumer = resources[function_id(resources, "start_checks")]["Properties"]
    assert ingest["VisibilityTimeout"] == 6 * consumer["Timeout"]
    for queue_id in queues.values():
        assert resources[queue_id]["Properties"]["SqsManagedSseEnabled"] is True
    policies = of_type(resources, "AWS::SQS::QueuePolicy").values()
    for queue_id in queues.values():
        (policy,) = [p for p in policies if {"Ref": queue_id} in p["Properties"]["Queues"]]
        assert_denies_insecure_transport(policy["Properties"]["PolicyDocument"]["Statement"])
    rule_id, _ = trigger_rule(resources)
    for queue_id in (queues["ingest"], queues["dead_letters"]):
        (policy,) = [p for p in policies if {"Ref": queue_id} in p["Properties"]["Queues"]]
        (send,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                   if s["Effect"] == "Allow"]
        assert "sqs:SendMessage" in as_list(send["Action"])
        assert send["Principal"] == {"Service": "events.amazonaws.com"}
        assert logical_id(send["Condition"]["ArnEquals"]["aws:SourceArn"]) == rule_id


def test_given_rekognition_tps_then_the_consumer_takes_one_photo_at_a_time_at_capped_concurrency(
    resources: dict[str, Any],
) -> None:
    from racecheck.core.throughput import Throughput

    context = cdk_json_context()
    expected = Throughput(rekognition_tps=context["rekognition_tps"],
                          photo_check_seconds=context["photo_check_seconds"],
                          max_receives=context["queue_max_receives"],
                          requeue_delay_seconds=context["requeue_delay_seconds"])
    consumer_id = function_id(resources, "start_checks")
    (mapping,) = [m["Properties"] for m in of_type(resources,
                                                   "AWS::Lambda::EventSourceMapping").values()
                  if logical_id(m["Properties"]["FunctionName"]) == consumer_id]
    assert logical_id(mapping["EventSourceArn"]) == queue_by_role(resources)["ingest"]
    assert mapping["BatchSize"] == 1
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": expected.concurrency}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    variables = resources[consumer_id]["Properties"]["Environment"]["Variables"]
    assert Throughput(**json.loads(variables["RACECHECK_THROUGHPUT"])) == expected
    machine_id, _ = the_one(resources, "AWS::StepFunctions::StateMachine")
    assert logical_id(variables["STATE_MACHINE_ARN"]) == machine_id


def test_given_a_higher_quota_then_the_concurrency_follows_it() -> None:
    from racecheck.core.throughput import QUOTA_SHARE

    _, stack = build_app(context_overrides={"rekognition_tps": "50"})
    template = Template.from_stack(stack)
    seconds = cdk_json_context()["photo_check_seconds"]
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {"BatchSize": 1,
         "ScalingConfig": {"MaximumConcurrency": math.ceil(QUOTA_SHARE * 50 * seconds)}},
    )


def test_given_the_tables_streams_then_the_follow_up_reads_them_with_retries_and_a_dlq(
    resources: dict[str, Any],
) -> None:
    queues = queue_by_role(resources)
    streams = {}
    for mapping in of_type(resources, "AWS::Lambda::EventSourceMapping").values():
        properties = mapping["Properties"]
        if "StartingPosition" not in properties:
            continue
        streams[logical_id(properties["EventSourceArn"])] = properties
        assert properties["StartingPosition"] == "TRIM_HORIZON"
        assert properties["BisectBatchOnFunctionError"] is True
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert 0 < properties["MaximumRetryAttempts"] <= 100
        assert logical_id(properties["DestinationConfig"]["OnFailure"]["Destination"]) == (
            queues["follow_up"])
    results = results_table_id(resources)
    assert set(streams) == {results, evidence_table_id(resources)}
    assert resources[results]["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_AND_OLD_IMAGES"}
    follow_up = logical_id(streams[results]["FunctionName"])
    assert resources[follow_up]["Properties"]["Handler"] == "lambdas.follow_up.handler"


def test_given_the_monitoring_then_every_alarm_notifies_the_alert_topic(
    resources: dict[str, Any],
) -> None:
    topic_id, _ = the_one(resources, "AWS::SNS::Topic")
    queues = queue_by_role(resources)
    alarms = of_type(resources, "AWS::CloudWatch::Alarm")
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
    watched = {(a["Properties"].get("Namespace"), a["Properties"].get("MetricName"))
               for a in alarms.values()}
    assert {("AWS/SQS", "ApproximateAgeOfOldestMessage"),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
            ("Racecheck", "PhotosError"), ("Racecheck", "UnexpectedExecutionFailures"),
            ("AWS/Lambda", "Errors")} == watched
    dead_letter_alarms = [a["Properties"] for a in alarms.values()
                          if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert {logical_id(d["Value"]) for a in dead_letter_alarms for d in a["Dimensions"]} == {
        queues["dead_letters"], queues["follow_up"]}
    assert all(a["Threshold"] == 1 for a in dead_letter_alarms)
    # CloudWatch publishes to the KMS-encrypted topic as a service: the key lets it
    _, key = the_one(resources, "AWS::KMS::Key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
               and set(s["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
               for s in statements)


# --- storage ---------------------------------------------------------------------------------


def logical_id_of_ingest_bucket(resources: dict[str, Any]) -> str:
    ingest = [
        key
        for key, value in of_type(resources, "AWS::S3::Bucket").items()
        if "NotificationConfiguration" in value["Properties"]
    ]
    assert len(ingest) == 1
    return ingest[0]


def assert_denies_insecure_transport(statements: list[dict[str, Any]]) -> None:
    assert any(
        statement["Effect"] == "Deny"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for statement in statements
    ), statements


def test_given_the_ingest_bucket_then_it_is_private_encrypted_versioned_and_emits_events(
    resources: dict[str, Any],
) -> None:
    bucket_id = logical_id_of_ingest_bucket(resources)
    properties = resources[bucket_id]["Properties"]
    assert properties["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert "LifecycleConfiguration" not in properties, "expiry is off by default"
    logs_bucket = logical_id(properties["LoggingConfiguration"]["DestinationBucketName"])
    assert logs_bucket != bucket_id

    for bucket in (bucket_id, logs_bucket):
        bucket_policies = [
            policy
            for policy in of_type(resources, "AWS::S3::BucketPolicy").values()
            if policy["Properties"]["Bucket"] == {"Ref": bucket}
        ]
        assert len(bucket_policies) == 1
        assert_denies_insecure_transport(
            bucket_policies[0]["Properties"]["PolicyDocument"]["Statement"]
        )


def test_given_photo_expiry_days_then_current_and_old_versions_expire(
    custom_template: Template,
) -> None:
    custom_template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {
                            "ExpirationInDays": 30,
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                            "Prefix": "uploads/",
                            "Status": "Enabled",
                        }
                    )
                ]
            }
        },
    )


def table_by_keys(resources: dict[str, Any], *keys: str) -> dict[str, Any]:
    for table in of_type(resources, "AWS::DynamoDB::Table").values():
        schema = [key["AttributeName"] for key in table["Properties"]["KeySchema"]]
        if tuple(schema) == keys:
            return dict(table["Properties"])
    raise AssertionError(f"no table keyed by {keys}")


def test_given_the_tables_then_keys_index_billing_recovery_and_encryption_match_the_design(
    resources: dict[str, Any],
) -> None:
    results = table_by_keys(resources, "photo", "version")
    indexes = {index["IndexName"]: index for index in results["GlobalSecondaryIndexes"]}
    assert sorted(indexes) == ["by_bib", "by_verdict"]
    assert [(k["AttributeName"], k["KeyType"]) for k in indexes["by_bib"]["KeySchema"]] == [
        ("bib", "HASH"),
        ("recorded_at", "RANGE"),
    ]
    assert [(k["AttributeName"], k["KeyType"]) for k in indexes["by_verdict"]["KeySchema"]] == [
        ("verdict", "HASH"),
        ("recorded_at", "RANGE"),
    ]
    types = {a["AttributeName"]: a["AttributeType"] for a in results["AttributeDefinitions"]}
    assert types == {"photo": "S", "version": "S", "bib": "S", "verdict": "S", "recorded_at": "S"}

    bib_tables = [
        table["Properties"]
        for table in of_type(resources, "AWS::DynamoDB::Table").values()
        if [k["AttributeName"] for k in table["Properties"]["KeySchema"]] == ["bib"]
    ]
    assert len(bib_tables) == 2, "runners and evidence are both keyed by bib"
    for table in [results, *bib_tables]:
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["SSESpecification"]["SSEEnabled"] is True


# --- alerts ----------------------------------------------------------------------------------


def test_given_the_topic_then_it_is_kms_encrypted_with_a_rotating_key_and_tls_only(
    resources: dict[str, Any],
) -> None:
    topic_id, topic = the_one(resources, "AWS::SNS::Topic")
    key_id, key = the_one(resources, "AWS::KMS::Key")
    assert logical_id(topic["Properties"]["KmsMasterKeyId"]) == key_id
    assert key["Properties"]["EnableKeyRotation"] is True
    _, topic_policy = the_one(resources, "AWS::SNS::TopicPolicy")
    assert topic_policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    assert_denies_insecure_transport(topic_policy["Properties"]["PolicyDocument"]["Statement"])


def test_given_email_and_sms_context_then_email_gets_everything_and_sms_only_suspects(
    custom_template: Template,
) -> None:
    subscriptions = custom_template.find_resources("AWS::SNS::Subscription")
    by_protocol: dict[str, list[dict[str, Any]]] = {}
    for subscription in subscriptions.values():
        properties = subscription["Properties"]
        by_protocol.setdefault(properties["Protocol"], []).append(properties)

    assert sorted(s["Endpoint"] for s in by_protocol["email"]) == ["a@b.org", "c@d.org"]
    assert all("FilterPolicy" not in s for s in by_protocol["email"])
    (sms,) = by_protocol["sms"]
    assert sms["Endpoint"] == "+15551234567"
    # Digests and photo alerts are email only: SMS is for suspects.
    assert sms["FilterPolicy"] == {"alert_type": ["SUSPECT"]}
    assert sms.get("FilterPolicyScope", "MessageAttributes") == "MessageAttributes"


# --- functions -------------------------------------------------------------------------------


def test_given_the_functions_then_runtime_arch_tracing_and_environment_match_the_design(
    resources: dict[str, Any],
) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")
    handlers = sorted(f["Properties"]["Handler"] for f in functions.values())
    assert handlers == [
        f"lambdas.{name}.handler"
        for name in sorted(
            ["check_image", "moderate", "read_bibs", "analyze_faces", "decide", "digest",
             "start_checks", "follow_up", "suspect_alerts"]
        )
    ]
    racecheck_block = cdk_json_context()["racecheck"]
    for function in functions.values():
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == ["arm64"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        variables = properties["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == "racecheck"
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Racecheck"
        if properties["Handler"] == "lambdas.start_checks.handler":
            continue  # the consumer needs the queue's pace, not the checks' thresholds
        assert json.loads(variables["RACECHECK_SETTINGS"]) == racecheck_block
        Settings.from_env({"RACECHECK_SETTINGS": variables["RACECHECK_SETTINGS"]})

    decide = resources[function_id(resources, "decide")]["Properties"]["Environment"]["Variables"]
    runners_id = logical_id(decide["RUNNERS_TABLE_NAME"])
    assert runners_id.startswith("TablesRunners")

    digest = resources[function_id(resources, "digest")]["Properties"]["Environment"]["Variables"]
    assert logical_id(digest["RESULTS_TABLE_NAME"]) == results_table_id(resources)
    assert logical_id(digest["ALERT_TOPIC_ARN"]) == the_one(resources, "AWS::SNS::Topic")[0]


def test_given_one_code_asset_then_all_functions_share_it(resources: dict[str, Any]) -> None:
    codes = {
        json.dumps(f["Properties"]["Code"], sort_keys=True)
        for f in of_type(resources, "AWS::Lambda::Function").values()
    }
    assert len(codes) == 1


# --- IAM -------------------------------------------------------------------------------------


def test_given_every_policy_then_no_wildcard_action_and_star_only_where_iam_has_no_resources(
    resources: dict[str, Any],
) -> None:
    policies = of_type(resources, "AWS::IAM::Policy")
    assert policies
    roles = of_type(resources, "AWS::IAM::Role")
    assert all("ManagedPolicyArns" not in role["Properties"] for role in roles.values())
    for policy_id, policy in policies.items():
        for action, resource in grants(policy):
            assert "*" not in action, f"{policy_id}: wildcard action {action}"
            if resource == "*":
                assert action in WILDCARD_RESOURCE_ACTIONS, f"{policy_id}: {action} on *"


def test_given_the_handlers_then_each_role_holds_exactly_its_grants(
    resources: dict[str, Any],
) -> None:
    bucket = logical_id_of_ingest_bucket(resources)
    runners = logical_id(
        resources[function_id(resources, "decide")]["Properties"]["Environment"]["Variables"][
            "RUNNERS_TABLE_NAME"
        ]
    )
    xray = {("xray:PutTraceSegments", "*"), ("xray:PutTelemetryRecords", "*")}
    read_photo = {("s3:GetObject", f"{bucket}/*"), ("s3:GetObjectVersion", f"{bucket}/*")}
    # every Rekognition call first takes a slot of the shared quota
    rekognition = xray | read_photo | {("dynamodb:UpdateItem", quota_table_id(resources))}
    expected = {
        "check_image": xray | read_photo | {("s3:ListBucket", bucket)},
        "moderate": rekognition | {("rekognition:DetectModerationLabels", "*")},
        "read_bibs": rekognition | {("rekognition:DetectText", "*")},
        "analyze_faces": rekognition | {("rekognition:DetectFaces", "*")},
        "decide": xray | {("dynamodb:GetItem", runners), ("dynamodb:BatchGetItem", runners)},
        "digest": xray | digest_grants(resources),
        "start_checks": xray | consumer_grants(resources),
        "follow_up": xray | stream_grants(resources, results_table_id(resources))
        | publish_grants(resources)
        | {("dynamodb:PutItem", results_table_id(resources)),
           ("dynamodb:UpdateItem", results_table_id(resources)),
           ("dynamodb:UpdateItem", evidence_table_id(resources))},
        "suspect_alerts": xray | stream_grants(resources, evidence_table_id(resources))
        | publish_grants(resources) | {("dynamodb:UpdateItem", evidence_table_id(resources))},
    }
    for module, wanted in expected.items():
        assert function_grants(resources, module) == wanted, module


def test_given_the_asl_then_the_state_machine_role_grants_exactly_its_integrations(
    resources: dict[str, Any],
) -> None:
    _, machine = the_one(resources, "AWS::StepFunctions::StateMachine")
    substitutions = machine["Properties"]["DefinitionSubstitutions"]
    definition = json.loads(machine["Properties"]["DefinitionString"])
    target_parameter = {"lambda": "FunctionName", "dynamodb": "TableName", "sns": "TopicArn"}

    needed = set()
    for integration, parameters in asl_task_resources(definition):
        action = INTEGRATION_ACTIONS[integration]  # KeyError = an integration nobody granted
        service = integration.split(":::")[1].split(":")[0]
        placeholder = re.fullmatch(r"\$\{(\w+)\}", parameters[target_parameter[service]])
        assert placeholder, f"{integration} target must be a substitution placeholder"
        needed.add((action, logical_id(substitutions[placeholder.group(1)])))

    role_id = logical_id(machine["Properties"]["RoleArn"])
    granted = grants(policy_of_role(resources, role_id))
    service_grants = {(a, r) for a, r in granted if r != "*"}
    assert service_grants == needed


# --- review digest ---------------------------------------------------------------------------


def results_table_id(resources: dict[str, Any]) -> str:
    for key, table in of_type(resources, "AWS::DynamoDB::Table").items():
        if [k["AttributeName"] for k in table["Properties"]["KeySchema"]] == ["photo", "version"]:
            return key
    raise AssertionError("no results table")


def evidence_table_id(resources: dict[str, Any]) -> str:
    for key, table in of_type(resources, "AWS::DynamoDB::Table").items():
        if "StreamSpecification" in table["Properties"] and [
                k["AttributeName"] for k in table["Properties"]["KeySchema"]] == ["bib"]:
            return key
    raise AssertionError("no evidence table")


def quota_table_id(resources: dict[str, Any]) -> str:
    for key, table in of_type(resources, "AWS::DynamoDB::Table").items():
        if [k["AttributeName"] for k in table["Properties"]["KeySchema"]] == ["api"]:
            return key
    raise AssertionError("no quota table")


def publish_grants(resources: dict[str, Any]) -> set[tuple[str, str]]:
    """Publish to the alert topic, with its key."""
    topic_id, topic = the_one(resources, "AWS::SNS::Topic")
    topic_key = logical_id(topic["Properties"]["KmsMasterKeyId"])
    return {("sns:Publish", topic_id), ("kms:GenerateDataKey", topic_key),
            ("kms:Decrypt", topic_key)}


def digest_grants(resources: dict[str, Any]) -> set[tuple[str, str]]:
    """Query on the by_verdict index only; publish to the topic, with its key."""
    return {("dynamodb:Query", f"{results_table_id(resources)}/index/by_verdict"),
            *publish_grants(resources)}


def stream_grants(resources: dict[str, Any], table_id: str) -> set[tuple[str, str]]:
    """What the DynamoDB event source needs: this table's stream; ListStreams has no ARN."""
    stream = table_id  # Fn::GetAtt [table, StreamArn]
    return {("dynamodb:ListStreams", "*"), ("dynamodb:DescribeStream", stream),
            ("dynamodb:GetRecords", stream), ("dynamodb:GetShardIterator", stream),
            ("sqs:SendMessage", queue_by_role(resources)["follow_up"]),
            ("sqs:GetQueueAttributes", queue_by_role(resources)["follow_up"]),
            ("sqs:GetQueueUrl", queue_by_role(resources)["follow_up"])}


def consumer_grants(resources: dict[str, Any]) -> set[tuple[str, str]]:
    """Run the state machine, write ERROR records, consume the ingest queue."""
    machine_id, _ = the_one(resources, "AWS::StepFunctions::StateMachine")
    ingest = queue_by_role(resources)["ingest"]
    return {("states:StartSyncExecution", machine_id),
            ("dynamodb:PutItem", results_table_id(resources)),
            *{(action, ingest) for action in (
                "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl",
                "sqs:DeleteMessage", "sqs:GetQueueAttributes")}}


def schedule_rules(resources: dict[str, Any]) -> dict[str, Any]:
    return {
        key: rule
        for key, rule in of_type(resources, "AWS::Events::Rule").items()
        if "ScheduleExpression" in rule["Properties"]
    }


def digest_settings(**changes: Any) -> dict[str, Any]:
    return {"racecheck": {**cdk_json_context()["racecheck"], **changes}}


def test_given_digest_alerts_then_a_schedule_invokes_the_digest_function_each_window(
    resources: dict[str, Any],
) -> None:
    # given the default review_alerts "digest" every 60 minutes
    ((rule_id, rule),) = schedule_rules(resources).items()
    digest_id = function_id(resources, "digest")
    # then the rule fires hourly and targets the digest function with the event as it is
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    assert rule["Properties"]["State"] == "ENABLED"
    (target,) = rule["Properties"]["Targets"]
    assert logical_id(target["Arn"]) == digest_id
    assert "Input" not in target and "InputPath" not in target, "the handler reads event.time"
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 3600
    # and only this rule may invoke it
    (permission,) = of_type(resources, "AWS::Lambda::Permission").values()
    assert permission["Properties"]["Principal"] == "events.amazonaws.com"
    assert permission["Properties"]["Action"] == "lambda:InvokeFunction"
    assert logical_id(permission["Properties"]["FunctionName"]) == digest_id
    assert logical_id(permission["Properties"]["SourceArn"]) == rule_id


def test_given_review_digest_minutes_then_the_schedule_follows_it() -> None:
    _, stack = build_app(context_overrides=digest_settings(review_digest_minutes=15))
    template = Template.from_stack(stack)
    template.has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(15 minutes)"}
    )


def test_given_each_review_alerts_then_no_digest_is_deployed_but_the_index_stays() -> None:
    # given review_alerts "each": the workflow alerts every REVIEW photo itself
    _, stack = build_app(context_overrides=digest_settings(review_alerts="each"))
    template = Template.from_stack(stack).to_json()
    resources = dict(template["Resources"])
    # then there is no digest function, schedule, invoke permission or output
    handlers = [
        f["Properties"]["Handler"] for f in of_type(resources, "AWS::Lambda::Function").values()
    ]
    assert "lambdas.digest.handler" not in handlers and len(handlers) == 8
    assert schedule_rules(resources) == {}
    assert of_type(resources, "AWS::Lambda::Permission") == {}
    assert "ReviewDigestFunctionName" not in template["Outputs"]
    # and the by_verdict index remains (switching back needs no index rebuild)
    results = resources[results_table_id(resources)]["Properties"]
    assert "by_verdict" in {index["IndexName"] for index in results["GlobalSecondaryIndexes"]}


def test_given_the_by_verdict_projection_then_the_digest_reads_the_same_from_it_as_from_records(
    resources: dict[str, Any],
) -> None:
    # given a full main record, and what the by_verdict index projects of it
    results = resources[results_table_id(resources)]["Properties"]
    (index,) = [i for i in results["GlobalSecondaryIndexes"] if i["IndexName"] == "by_verdict"]
    assert index["Projection"]["ProjectionType"] == "INCLUDE"
    projected = {"photo", "version", "verdict", "recorded_at",
                 *index["Projection"]["NonKeyAttributes"]}
    record = {
        "photo": "ingest/finish/a.jpg", "version": "v1", "bucket": "ingest",
        "key": "finish/a.jpg", "verdict": "REVIEW", "reasons": ["GENDER_MISMATCH"],
        "summary": "REVIEW: bib 5078 (registered M), face estimated F.",
        "recorded_at": "2026-11-22T08:10:00.000Z",
        "links": [{"bib": "5078", "registered": {"gender": "M", "age_min": 60, "age_max": 69},
                   "estimated": {"gender": "F", "gender_confidence": 95.0, "age_low": 23,
                                 "age_high": 38}, "findings": ["GENDER_MISMATCH"]}],
        "faces": [{"box": {}}], "thresholds": {"x": 1}, "image": {"width": 10},
    }
    from_index = {name: value for name, value in record.items() if name in projected}
    start, end = "2026-11-22T08:00:00.000Z", "2026-11-22T09:00:00.000Z"
    # then the digest composed from the index equals the one from the full record
    assert compose_digest([from_index], window_start=start, window_end=end) == compose_digest(
        [record], window_start=start, window_end=end
    )
    assert {"faces", "thresholds", "image"}.isdisjoint(projected)


# --- outputs ---------------------------------------------------------------------------------


def test_given_the_stack_then_outputs_name_everything_a_user_needs(
    default_template: Template, resources: dict[str, Any]
) -> None:
    outputs = default_template.to_json()["Outputs"]
    referenced = {logical_id(output["Value"]) for output in outputs.values()
                  if isinstance(output["Value"], dict)}
    for resource_type in (
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::StepFunctions::StateMachine",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
    ):
        assert set(of_type(resources, resource_type)) <= referenced, resource_type


# --- configuration ---------------------------------------------------------------------------


def context_getter(overrides: dict[str, Any]) -> Any:
    context = {**cdk_json_context(), **overrides}
    return context.get


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"notify_sms": "5551234567"}, "notify_sms"),
        ({"notify_email": "a@b.org,not-an-address"}, "not-an-address"),
        ({"photo_expiry_days": "-3"}, "photo_expiry_days"),
        ({"ingest_prefix": "/uploads"}, "ingest_prefix"),
        ({"racecheck": "{not json"}, "racecheck"),
    ],
)
def test_given_a_bad_context_value_when_read_then_the_error_names_it(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        StackConfig.from_context(context_getter(overrides))


def test_given_cli_strings_when_read_then_they_are_parsed() -> None:
    config = StackConfig.from_context(context_getter(CUSTOM_CONTEXT))
    assert config.photo_expiry_days == 30
    assert config.notify_emails == ("a@b.org", "c@d.org")
    assert config.notify_sms_numbers == ("+15551234567",)
    assert config.ingest_prefix == "uploads/"


def test_given_an_out_of_range_setting_when_synthesized_then_synth_fails_clearly() -> None:
    settings = {**cdk_json_context()["racecheck"], "gender_review_confidence": 100.5}

    with pytest.raises(ConfigError, match="gender_review_confidence"):
        build_app(context_overrides={"racecheck": settings})


def test_given_an_unknown_setting_when_synthesized_then_synth_fails_clearly() -> None:
    settings = {**cdk_json_context()["racecheck"], "bib_max_digit": 5}

    with pytest.raises(ConfigError, match="bib_max_digit"):
        build_app(context_overrides={"racecheck": settings})


# --- bundling (offline parts; `cdk synth` in CI runs pip for real) ----------------------------


def test_given_the_bundler_then_pip_targets_lambda_python_and_arm64_wheels_only() -> None:
    command = pip_install_command(Path("req.txt"), Path("out"))
    assert command[command.index("--python-version") + 1] == "3.12"
    assert "--only-binary=:all:" in command
    platforms = [command[i + 1] for i, arg in enumerate(command) if arg == "--platform"]
    assert platforms == ["manylinux2014_aarch64", "manylinux_2_28_aarch64"]


def test_given_the_requirements_then_every_runtime_dependency_is_pinned() -> None:
    lines = [
        line.strip()
        for line in (REPOSITORY_ROOT / "lambdas" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", line) for line in lines)
    names = {line.split("==")[0].lower() for line in lines}
    assert {"pillow", "aws-lambda-powertools", "aws-xray-sdk"} <= names


def imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_given_the_copied_sources_then_every_project_import_resolves_inside_the_bundle(
    tmp_path: Path,
) -> None:
    copy_sources(REPOSITORY_ROOT, tmp_path)
    handlers = sorted((tmp_path / "lambdas").glob("*.py"))
    assert {
        "check_image.py", "moderate.py", "read_bibs.py", "analyze_faces.py", "decide.py",
        "digest.py",
    } <= {handler.name for handler in handlers}
    assert not (tmp_path / "racecheck" / "detectors").exists()
    assert not (tmp_path / "racecheck" / "local").exists()

    unresolved = []
    for source in sorted(tmp_path.rglob("*.py")):
        for module in imported_modules(source):
            if module.split(".")[0] not in {"lambdas", "racecheck"}:
                continue
            as_path = tmp_path.joinpath(*module.split("."))
            if not (as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists()):
                unresolved.append(f"{source.relative_to(tmp_path)} imports {module}")
    assert unresolved == [], f"bundled code imports modules the bundle lacks: {unresolved}"


def test_given_real_bundling_when_synthesized_then_the_local_bundler_builds_the_asset(
    tmp_path: Path,
) -> None:
    # Given a copy of the sources whose requirements are empty, so pip needs no network
    source = tmp_path / "repo"
    copy_sources(REPOSITORY_ROOT, source)
    (source / "lambdas" / "requirements.txt").write_text("# nothing to install\n")
    outdir = tmp_path / "cdk.out"

    # When the stack is synthesized with bundling on (jsii calls LocalPythonBundler)
    app, _ = build_app(bundle=True, outdir=outdir, repository_root=source)
    assembly = app.synth()

    # Then one asset holds the handlers and racecheck.core, and nothing else of the project
    template = assembly.get_stack_by_name("Racecheck").template
    code = {
        json.dumps(f["Properties"]["Code"], sort_keys=True)
        for f in of_type(template["Resources"], "AWS::Lambda::Function").values()
    }
    assert len(code) == 1
    (asset,) = [path for path in outdir.glob("asset.*") if path.is_dir()]
    assert (asset / "lambdas" / "check_image.py").is_file()
    assert (asset / "racecheck" / "core" / "settings.py").is_file()
    assert sorted(p.name for p in (asset / "racecheck").iterdir()) == ["__init__.py", "core"]
