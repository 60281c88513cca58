"""The alert topic: KMS-encrypted, TLS-only, with e-mail (everything) and SMS (suspects only)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

ALERT_TYPE_ATTRIBUTE = "alert_type"
SMS_ALERT_TYPES = ("SUSPECT",)


class Alerts(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        emails: tuple[str, ...],
        sms_numbers: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)

        self.key = kms.Key(
            self,
            "TopicKey",
            description="Encrypts racecheck alerts (they name bibs and verdicts)",
            enable_key_rotation=True,
        )
        # CloudWatch alarms publish to the topic as the cloudwatch.amazonaws.com service, which
        # needs the topic's key (SNS: "Encrypting messages published to Amazon SNS with AWS KMS").
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True)

        for email in emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        # SMS costs money per message and wakes people up: only SUSPECT alerts go there.
        sms_filter = {
            ALERT_TYPE_ATTRIBUTE: sns.SubscriptionFilter.string_filter(
                allowlist=list(SMS_ALERT_TYPES)
            )
        }
        for number in sms_numbers:
            self.topic.add_subscription(
                subscriptions.SmsSubscription(number, filter_policy=sms_filter)
            )
