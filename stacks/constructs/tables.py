"""DynamoDB tables: results per photo (indexed by bib and by verdict), runners, evidence per bib."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from racecheck.core.digest import BY_VERDICT_INDEX, DIGEST_ATTRIBUTES

BY_BIB_INDEX = "by_bib"


def _string_key(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


def _table(
    scope: Construct,
    construct_id: str,
    *,
    partition: str,
    sort: str | None = None,
    stream: dynamodb.StreamViewType | None = None,
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
        stream=stream,
    )


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        # Both images in the stream: the follow-up tells a new verdict from its own
        # bookkeeping update of the same record.
        self.results = _table(
            self,
            "Results",
            partition="photo",
            sort="version",
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        )
        # Sparse: only the per-bib items carry `bib`, so the index holds one entry per
        # (bib, photo) and never the photo records themselves.
        self.results.add_global_secondary_index(
            index_name=BY_BIB_INDEX,
            partition_key=_string_key("bib"),
            sort_key=_string_key("recorded_at"),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # Only the photos' own records carry `verdict` (per-bib items have `photo_verdict`),
        # so the index lists photos by verdict and time: the REVIEW digest's query. It
        # projects what the digest prints, not the full records (faces, thresholds, ...).
        self.results.add_global_secondary_index(
            index_name=BY_VERDICT_INDEX,
            partition_key=_string_key("verdict"),
            sort_key=_string_key("recorded_at"),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=list(DIGEST_ATTRIBUTES),
        )
        self.runners = _table(self, "Runners", partition="bib")
        # One item per Rekognition API: the next free call slot (racecheck.core.quota).
        self.quota = _table(self, "Quota", partition="api")
        self.evidence = _table(
            self, "Evidence", partition="bib", stream=dynamodb.StreamViewType.NEW_IMAGE
        )
