"""Test-wide settings: fake AWS credentials so boto3 never looks for real ones or stalls on
the instance metadata service (there is no AWS here), and a region for every client."""

from __future__ import annotations

import os

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "RouterTests",
        "POWERTOOLS_SERVICE_NAME": "router",
    }
)
