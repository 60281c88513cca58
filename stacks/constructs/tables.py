"""DynamoDB tables: results per photo (with a sparse index by bib), runners, evidence per bib."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

BY_BIB_INDEX = "by_bib"


def _string_key(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


def _table(
    scope: Construct, construct_id: str, *, partition: str, sort: str | None = None
) -> dynamodb.Table:
    return dynamodb.Table(
        scope,
        construct_id,
        partition_key=_string_key(partition),
        sort_key=_string_key(sort) if sort else None,
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=dynamodb.TableEncryption.AWS_MANAGED,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
    )


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.results = _table(self, "Results", partition="photo", sort="version")
        # Sparse: only the per-bib items carry `bib`, so the index holds one entry per
        # (bib, photo) and never the photo records themselves.
        self.results.add_global_secondary_index(
            index_name=BY_BIB_INDEX,
            partition_key=_string_key("bib"),
            sort_key=_string_key("recorded_at"),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.runners = _table(self, "Runners", partition="bib")
        self.evidence = _table(self, "Evidence", partition="bib")
