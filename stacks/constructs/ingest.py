"""The ingest bucket where photographers upload, and the bucket that receives its access logs."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_s3 as s3
from constructs import Construct


class IngestBucket(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, photo_expiry_days: int, key_prefix: str
    ) -> None:
        super().__init__(scope, construct_id)

        # Server access logs need SSE-S3 on the target bucket (SSE-KMS is not supported).
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        )

        lifecycle_rules = []
        if photo_expiry_days > 0:
            # Photos show people: with expiry on, old versions go too, not only current ones.
            lifecycle_rules.append(
                s3.LifecycleRule(
                    id="ExpirePhotos",
                    prefix=key_prefix or None,
                    expiration=Duration.days(photo_expiry_days),
                    noncurrent_version_expiration=Duration.days(photo_expiry_days),
                )
            )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="ingest/",
            lifecycle_rules=lifecycle_rules or None,
        )
        # Set on the bucket itself rather than with `event_bridge_enabled=True`, which adds a
        # custom-resource Lambda whose role needs s3:PutBucketNotification on every bucket.
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )
