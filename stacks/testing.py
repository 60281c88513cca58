"""Builds the stack in-process (tests, scripts) with the context that `cdk` would pass."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk

from stacks.racecheck_stack import REPOSITORY_ROOT, RacecheckStack

CDK_JSON = REPOSITORY_ROOT / "cdk.json"
STACK_NAME = "Racecheck"
# Template assertions need no Lambda asset: skipping bundling keeps a build at a few seconds.
SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


def build_app(
    *,
    context_overrides: Mapping[str, Any] | None = None,
    bundle: bool = False,
    outdir: Path | None = None,
    **stack_kwargs: Any,
) -> tuple[cdk.App, RacecheckStack]:
    context = {**cdk_json_context(), **(context_overrides or {})}
    if not bundle:
        context.update(SKIP_BUNDLING)
    app = cdk.App(context=context, outdir=str(outdir) if outdir else None)
    stack = RacecheckStack(app, STACK_NAME, **stack_kwargs)
    return app, stack
