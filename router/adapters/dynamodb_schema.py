"""The DynamoDB job table's schema, defined once: key, attributes, indexes and TTL attribute.

Plain dicts in boto3 `create_table` shape, used by the tests (moto) and by the SAM template
generator, so the adapter, the tests and the deployed table cannot disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Table key: one string partition key, no sort key. Two item kinds share it:
#   JOB#{job_id}                   a job (every other attribute of the Job record)
#   IDEM#{quoted owner}#{key}      an idempotency key -> job_id (see dynamodb_jobs.py)
PK = "pk"
JOB_PREFIX = "JOB#"
IDEM_PREFIX = "IDEM#"

# Owner index: an owner's jobs newest first (Query ScanIndexForward=False).
# created_sk = "<created_at ISO>#<job_id>": time order, ties broken by id.
OWNER_INDEX = "by-owner"
OWNER_ATTR = "owner"
OWNER_SORT_ATTR = "created_sk"

# Active index (sparse): only items carrying `active_pk` are in it, and only queued/running/
# cancelling jobs carry it; entering a finished state REMOVEs it. The sweeper Queries it, oldest
# `updated_at` first, never Scans the table. The partition key is sharded (ACTIVE#0..n-1) so that
# progress writes of many active jobs do not all land on one index partition.
ACTIVE_INDEX = "active"
ACTIVE_PK_ATTR = "active_pk"
ACTIVE_SORT_ATTR = "updated_at"
ACTIVE_SHARDS = 4

# Active-by-owner index (sparse, keys only): `active_owner` = owner while the job is active.
# count_active(owner) is a Select=COUNT Query on one owner's partition: it reads only that owner's
# active jobs (bounded by jobs.max_active_per_owner), never the table or the owner's history.
ACTIVE_OWNER_INDEX = "active-by-owner"
ACTIVE_OWNER_ATTR = "active_owner"

# Notification outbox index (sparse): a job whose job-end notification awaits delivery carries
# `notify_pk` (one partition: pending notifications are few) and `notify_due` (when it is due,
# jobs.notification_due). The sweeper Queries due ones; delivering REMOVEs both.
NOTIFY_INDEX = "notify-due"
NOTIFY_PK_ATTR = "notify_pk"
NOTIFY_PK = "NOTIFY"
NOTIFY_SORT_ATTR = "notify_due"

# TTL: epoch seconds, set when a job finishes (finished_at + ttl_days) and on idempotency items.
# DynamoDB deletes expired items lazily (typically within days), so readers also filter in code.
TTL_ATTR = "ttl_epoch"

ATTRIBUTE_DEFINITIONS: list[dict[str, str]] = [
    {"AttributeName": PK, "AttributeType": "S"},
    {"AttributeName": OWNER_ATTR, "AttributeType": "S"},
    {"AttributeName": OWNER_SORT_ATTR, "AttributeType": "S"},
    {"AttributeName": ACTIVE_PK_ATTR, "AttributeType": "S"},
    {"AttributeName": ACTIVE_SORT_ATTR, "AttributeType": "S"},
    {"AttributeName": ACTIVE_OWNER_ATTR, "AttributeType": "S"},
    {"AttributeName": NOTIFY_PK_ATTR, "AttributeType": "S"},
    {"AttributeName": NOTIFY_SORT_ATTR, "AttributeType": "S"},
]

KEY_SCHEMA: list[dict[str, str]] = [{"AttributeName": PK, "KeyType": "HASH"}]

GLOBAL_SECONDARY_INDEXES: list[dict[str, Any]] = [
    {
        "IndexName": OWNER_INDEX,
        "KeySchema": [
            {"AttributeName": OWNER_ATTR, "KeyType": "HASH"},
            {"AttributeName": OWNER_SORT_ATTR, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
    {
        "IndexName": ACTIVE_INDEX,
        "KeySchema": [
            {"AttributeName": ACTIVE_PK_ATTR, "KeyType": "HASH"},
            {"AttributeName": ACTIVE_SORT_ATTR, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
    {
        "IndexName": ACTIVE_OWNER_INDEX,
        "KeySchema": [{"AttributeName": ACTIVE_OWNER_ATTR, "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    },
    {
        "IndexName": NOTIFY_INDEX,
        "KeySchema": [
            {"AttributeName": NOTIFY_PK_ATTR, "KeyType": "HASH"},
            {"AttributeName": NOTIFY_SORT_ATTR, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    },
]

BILLING_MODE = "PAY_PER_REQUEST"


def table_definition(name: str) -> dict[str, Any]:
    """Keyword arguments for `create_table` (and the body of the SAM/CloudFormation resource)."""
    return {
        "TableName": name,
        "AttributeDefinitions": [dict(a) for a in ATTRIBUTE_DEFINITIONS],
        "KeySchema": [dict(k) for k in KEY_SCHEMA],
        "GlobalSecondaryIndexes": [dict(g) for g in GLOBAL_SECONDARY_INDEXES],
        "BillingMode": BILLING_MODE,
    }


def create_table(client: DynamoDBClient, name: str) -> None:
    """Create the job table, wait until it is ACTIVE, and turn TTL on."""
    client.create_table(**table_definition(name))
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTR})
