"""Tell transient AWS errors (throttling, 5xx, dropped connections) from permanent ones.

Handlers re-raise transient errors under two names the state machine retries and, when the
quick retries run out, hands back to the queue: ``ServiceThrottled`` and
``ServiceUnavailable``. A Lambda error reaches Step Functions under the exception's class
name, and botocore names its exceptions after each service's own error codes, so without
this the ASL would have to list every code of every service (and an unmodeled 503 arrives
as a plain ``ClientError``). The classification is botocore's own, from its standard retry
mode, so it follows the SDK's list of throttling codes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

_THROTTLED = ThrottledRetryableChecker()
_TRANSIENT = TransientRetryableChecker()
_SERVER_ERROR = 500

Handler = TypeVar("Handler", bound=Callable[..., Any])


class ServiceThrottled(Exception):
    """An AWS API refused the call for its rate: try again later."""


class ServiceUnavailable(Exception):
    """An AWS API failed on its side (5xx) or the connection dropped: try again later."""


def transient_kind(error: BaseException) -> type[Exception] | None:
    """``ServiceThrottled``, ``ServiceUnavailable`` or None (permanent, or not from AWS)."""
    if isinstance(error, ServiceThrottled | ServiceUnavailable):
        return type(error)
    if isinstance(error, BotocoreConnectionError | HTTPClientError):
        return ServiceUnavailable
    if not isinstance(error, ClientError):
        return None
    context = RetryContext(attempt_number=1, parsed_response=error.response)
    if _THROTTLED.is_retryable(context):
        return ServiceThrottled
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    if _TRANSIENT.is_retryable(context) or status >= _SERVER_ERROR:
        return ServiceUnavailable
    return None


def describe(error: BaseException) -> str:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return f"{code or type(error).__name__}: {error}"


def transient_errors_renamed(handler: Handler) -> Handler:
    """Wrap a Lambda handler so transient AWS errors surface under the names the ASL retries."""

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            kind = transient_kind(error)
            if kind is None or isinstance(error, kind):
                raise
            raise kind(describe(error)) from error

    return wrapped  # type: ignore[return-value]
