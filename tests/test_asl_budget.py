"""What the ASL promises AWS: every run fits Express's 5 minutes, every retried error has the
name AWS gives it. Both are read from statemachine/photo_check.asl.json itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.retries.standard import ThrottledRetryableChecker

from racecheck.core import aws_errors
from racecheck.local.environment import step_functions_error_name
from stacks.constructs.functions import FUNCTION_SPECS
from stacks.racecheck_stack import DEFINITION_PATH

EXPRESS_LIMIT_SECONDS = 300
# A minute of the five is kept for what the sum below cannot see: state transitions, the
# queue consumer's own start, clock skew.
BUDGET_SECONDS = EXPRESS_LIMIT_SECONDS - 60
# Step Functions developer guide, "Handle Lambda service exceptions": errors of the Lambda
# service itself, and Lambda.Unknown for crashes (out of memory, function timeout).
LAMBDA_ERRORS = {
    "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException", "Lambda.TooManyRequestsException",
    "Lambda.Unknown", "Sandbox.Timedout",
}
# Generic names of the optimized DynamoDB integration (Java SDK base and client errors).
DYNAMODB_GENERIC = {"DynamoDB.AmazonDynamoDBException", "DynamoDB.SdkClientException"}
HANDLER_ERRORS = {aws_errors.ServiceThrottled.__name__, aws_errors.ServiceUnavailable.__name__}
DYNAMODB_OPERATIONS = {"getItem": "GetItem", "putItem": "PutItem"}
PLACEHOLDER_TO_SPEC = {f"${{{spec.construct_id}FunctionArn}}": spec for spec in FUNCTION_SPECS}


@pytest.fixture(scope="module")
def states() -> dict[str, Any]:
    definition = json.loads(DEFINITION_PATH.read_text(encoding="utf-8"))
    states: dict[str, Any] = definition["States"]
    return states


def successors(state: dict[str, Any]) -> Iterator[str]:
    if "Next" in state:
        yield state["Next"]
    for choice in state.get("Choices", []):
        yield choice["Next"]
    if "Default" in state:
        yield state["Default"]
    for catcher in state.get("Catch", []):
        yield catcher["Next"]


def retry_waits(retrier: dict[str, Any]) -> float:
    """The longest total wait of one retrier: full jitter waits at most the capped delay."""
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    return sum(min(retrier["IntervalSeconds"] * retrier["BackoffRate"] ** attempt, cap)
               for attempt in range(retrier["MaxAttempts"]))


def worst_case_seconds(state: dict[str, Any]) -> float:
    """Every attempt hanging until the Task's timeout, every retrier used up."""
    if state["Type"] != "Task":
        return 0.0
    retriers = state.get("Retry", [])
    attempts = 1 + sum(retrier["MaxAttempts"] for retrier in retriers)
    return attempts * state["TimeoutSeconds"] + sum(retry_waits(r) for r in retriers)


def longest_path(states: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> tuple[
        float, tuple[str, ...]]:
    assert name not in seen, f"cycle through {name}: every run must end"
    state = states[name]
    best: tuple[float, tuple[str, ...]] = (0.0, ())
    for following in set(successors(state)):
        best = max(best, longest_path(states, following, (*seen, name)))
    return worst_case_seconds(state) + best[0], (name, *best[1])


def test_every_task_has_a_timeout_and_a_retry(states: dict[str, Any]) -> None:
    for name, state in states.items():
        if state["Type"] == "Task":
            assert state.get("TimeoutSeconds"), f"{name}: no TimeoutSeconds (AWS default: none)"
            assert state.get("Retry"), f"{name}: no Retry"


def test_the_longest_run_fits_express_five_minutes_with_a_minute_to_spare(
        states: dict[str, Any]) -> None:
    # given every Task's attempts timing out and every retry waiting its longest
    seconds, path = longest_path(states, "CheckImage")
    # then the worst path still ends well inside the limit no Catch can see
    print(f"worst-case run: {seconds:.0f} s of {EXPRESS_LIMIT_SECONDS} via {' > '.join(path)}")
    assert seconds <= BUDGET_SECONDS, (seconds, path)
    assert "RecordError" in path, "the worst path ends recording an ERROR"


def test_each_lambda_fails_on_its_own_timeout_before_the_task_gives_up(
        states: dict[str, Any]) -> None:
    for name, state in states.items():
        if state.get("Resource") != "arn:aws:states:::lambda:invoke":
            continue
        spec = PLACEHOLDER_TO_SPEC[state["Parameters"]["FunctionName"]]
        assert state["TimeoutSeconds"] > spec.timeout_seconds, name


def error_names(states: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    for name, state in states.items():
        for kind in ("Retry", "Catch"):
            for entry in state.get(kind, []):
                for error in entry["ErrorEquals"]:
                    yield name, state.get("Resource", ""), error


def transient_dynamodb_errors(operation: str) -> set[str]:
    """The operation's modeled errors that are throttling or transient, by botocore's rules."""
    model = botocore.session.get_session().get_service_model("dynamodb")
    throttling = set(ThrottledRetryableChecker._THROTTLED_ERROR_CODES)
    found = set()
    for shape in model.operation_model(operation).error_shapes:
        if (shape.name in throttling or "retryable" in shape.metadata
                or shape.name in ("InternalServerError", "TransactionConflictException")):
            found.add(step_functions_error_name("DynamoDB", shape.name))
    return found


def test_every_error_name_is_one_aws_can_raise(states: dict[str, Any]) -> None:
    model = botocore.session.get_session().get_service_model("dynamodb")
    for name, resource, error in error_names(states):
        if error.startswith("States."):
            continue
        if resource == "arn:aws:states:::lambda:invoke":
            assert error in LAMBDA_ERRORS | HANDLER_ERRORS, (name, error)
            continue
        assert resource.startswith("arn:aws:states:::dynamodb:"), (name, resource)
        operation = DYNAMODB_OPERATIONS[resource.rsplit(":", 1)[1]]
        modeled = {step_functions_error_name("DynamoDB", shape.name)
                   for shape in model.operation_model(operation).error_shapes}
        assert error in modeled | DYNAMODB_GENERIC, (
            f"{name}: {error} is not how Step Functions names a {operation} error")


def test_every_transient_dynamodb_error_is_retried_then_handed_back(
        states: dict[str, Any]) -> None:
    for name, state in states.items():
        resource = state.get("Resource", "")
        if not resource.startswith("arn:aws:states:::dynamodb:"):
            continue
        operation = DYNAMODB_OPERATIONS[resource.rsplit(":", 1)[1]]
        retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
        handed_back = {error for catcher in state["Catch"] if catcher["Next"] == "RetryLater"
                       for error in catcher["ErrorEquals"]}
        wanted = transient_dynamodb_errors(operation)
        assert wanted <= retried, (name, wanted - retried)
        assert wanted <= handed_back, (name, wanted - handed_back)


def test_throttling_and_5xx_in_a_lambda_are_retried_then_handed_back_to_the_queue(
        states: dict[str, Any]) -> None:
    for name, state in states.items():
        if state.get("Resource") != "arn:aws:states:::lambda:invoke":
            continue
        retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
        (to_queue,) = [catcher for catcher in state["Catch"] if catcher["Next"] == "RetryLater"]
        assert retried >= HANDLER_ERRORS and set(to_queue["ErrorEquals"]) >= HANDLER_ERRORS
        assert {"Lambda.TooManyRequestsException", "States.Timeout"} <= set(
            to_queue["ErrorEquals"]), name
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name


def test_retry_later_names_the_original_error_for_the_consumer(states: dict[str, Any]) -> None:
    from racecheck.core.check_queue import RETRY_LATER

    retry_later = states["RetryLater"]
    assert retry_later["Type"] == "Fail"
    assert retry_later["ErrorPath"].startswith(f"States.Format('{RETRY_LATER}{{}}'")
