"""Check again what the deployed pipeline set aside: dead-lettered photos, ERROR verdicts, and
stream records the follow-up could not process.

- Dead-lettered photos: SQS's own message move task puts them back into the ingest queue
  (StartMessageMoveTask), as `aws sqs start-message-move-task` would.
- ERROR verdicts: each photo's event is queued again; the workflow checks a photo whose
  record is ERROR again, and a real verdict replaces it.
- Follow-up failures: the dead-letter message names a stretch of a table's stream; its
  records (kept 24 hours by DynamoDB Streams) are handed to the deployed function again.
  Every follow-up step is idempotent, so records that had succeeded change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from racecheck.core.digest import BY_VERDICT_INDEX
from racecheck.core.records import from_attribute_values

SEND_BATCH = 10  # SendMessageBatch's limit


@dataclass(frozen=True)
class ErrorPhoto:
    bucket: str
    key: str
    version: str
    reasons: list[str]


def move_dead_letters(sqs: Any, *, dead_letter_queue_arn: str, queue_arn: str) -> str:
    """Start SQS's move of every dead-lettered message back to the ingest queue."""
    response = sqs.start_message_move_task(SourceArn=dead_letter_queue_arn,
                                           DestinationArn=queue_arn)
    return str(response["TaskHandle"])


def error_photos(dynamodb: Any, *, table: str) -> Iterator[ErrorPhoto]:
    """Every photo whose record is ERROR, from the by_verdict index."""
    paginator = dynamodb.get_paginator("query")
    for page in paginator.paginate(
            TableName=table, IndexName=BY_VERDICT_INDEX,
            KeyConditionExpression="#verdict = :error",
            ExpressionAttributeNames={"#verdict": "verdict"},
            ExpressionAttributeValues={":error": {"S": "ERROR"}}):
        for item in page["Items"]:
            record = from_attribute_values(item)
            yield ErrorPhoto(bucket=str(record["bucket"]), key=str(record["key"]),
                             version=str(record["version"]),
                             reasons=list(record.get("reasons") or []))


def object_created(photo: ErrorPhoto) -> dict[str, Any]:
    """The S3 "Object Created" event the workflow expects, for an object already stored."""
    return {"version": "0", "detail-type": "Object Created", "source": "racecheck.redrive",
            "detail": {"bucket": {"name": photo.bucket},
                       "object": {"key": photo.key, "version-id": photo.version}}}


def queue_again(sqs: Any, *, queue_url: str, photos: list[ErrorPhoto]) -> int:
    sent = 0
    for start in range(0, len(photos), SEND_BATCH):
        batch = photos[start:start + SEND_BATCH]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(index), "MessageBody": json.dumps(object_created(photo))}
            for index, photo in enumerate(batch)])
        if response.get("Failed"):
            failed = ", ".join(f"{entry['Id']}: {entry.get('Message', '')}"
                               for entry in response["Failed"])
            raise RuntimeError(f"could not queue {len(response['Failed'])} photo(s): {failed}")
        sent += len(batch)
    return sent


@dataclass(frozen=True)
class FollowUpRedrive:
    batches: int
    records: int
    expired: int  # batches whose records the stream no longer holds


def stream_records(streams: Any, batch_info: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of one failed batch, read from the stream by sequence number."""
    iterator = streams.get_shard_iterator(
        StreamArn=batch_info["streamArn"], ShardId=batch_info["shardId"],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        SequenceNumber=batch_info["startSequenceNumber"])["ShardIterator"]
    last = int(batch_info["endSequenceNumber"])
    records: list[dict[str, Any]] = []
    while iterator:
        page = streams.get_records(ShardIterator=iterator, Limit=100)
        for record in page["Records"]:
            if int(record["dynamodb"]["SequenceNumber"]) > last:
                return records
            records.append({**record, "eventSourceARN": batch_info["streamArn"]})
        if not page["Records"]:
            return records
        iterator = page.get("NextShardIterator")
    return records


def redrive_follow_ups(sqs: Any, streams: Any, lambda_client: Any, *, queue_url: str,
                       function_by_table: dict[str, str]) -> FollowUpRedrive:
    """Hand each failed stream batch to its follow-up function again, then forget it."""
    batches = records = expired = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return FollowUpRedrive(batches=batches, records=records, expired=expired)
        for message in messages:
            batch_info = json.loads(message["Body"])["DDBStreamBatchInfo"]
            table = batch_info["streamArn"].split(":table/", 1)[1].split("/stream/", 1)[0]
            try:
                found = stream_records(streams, batch_info)
            except Exception as error:
                if getattr(error, "response", {}).get("Error", {}).get("Code") not in (
                        "TrimmedDataAccessException", "ExpiredIteratorException"):
                    raise
                found = []
            if not found:
                expired += 1
                continue  # left in the queue: its records are gone, a person must look
            response = lambda_client.invoke(
                FunctionName=function_by_table[table],
                Payload=json.dumps({"Records": found}, default=str).encode())
            result = json.loads(response["Payload"].read() or b"{}")
            if response.get("FunctionError") or result.get("batchItemFailures"):
                raise RuntimeError(f"the follow-up failed again on {table}: {result}")
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            batches += 1
            records += len(found)
