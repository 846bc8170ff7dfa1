"""The router's deterministic SageMaker names: a job's transform job, a model version's Model.

Pure (no AWS calls): the batch adapter, the local emulator, the EventBridge handler and
`sagemaker_jobs/deploy.py` all name SageMaker resources through this module.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from router.errors import InvalidRequest

if TYPE_CHECKING:
    from router.config import ModelSpec

# SageMaker resource names (transform jobs, models, endpoint configs): 1-63 characters,
# ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} (CreateTransformJob / CreateModel API reference).
SAGEMAKER_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
SAGEMAKER_NAME_MAX = 63
NAME_PREFIX = "router"
# The router's own job ids: "job_" + a 26-character ULID (Crockford base32).
_ROUTER_JOB_ID_RE = re.compile(r"^[A-Za-z0-9]+(_[A-Za-z0-9]+)*$")
_ULID_JOB_ID_RE = re.compile(r"^job_[0-9A-Za-z]{26}$")


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _slug(text: str) -> str:
    """Letters and digits kept, every other run of characters becomes one hyphen."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def _fit(head: str, tail: str) -> str:
    """`head-tail` cut to SageMaker's 63 characters by shortening `head` (never the hash tail)."""
    room = SAGEMAKER_NAME_MAX - len(tail) - 1
    head = head[:room].rstrip("-")
    return f"{head}-{tail}" if head else tail


def transform_job_name(job_id: str) -> str:
    """The transform job name of a router job: deterministic, so a repeated submission finds the
    job it already started instead of starting a second one.

    The real id form (`job_` + ULID) maps readably and one-to-one to `router-job-<ULID>`; any
    other id is slugged and suffixed with a hash of the exact id, so distinct ids stay distinct.
    """
    if not job_id:
        raise InvalidRequest("a job id is required to name its transform job")
    direct = f"{NAME_PREFIX}-{job_id.replace('_', '-')}"
    if _ROUTER_JOB_ID_RE.match(job_id) and len(direct) <= SAGEMAKER_NAME_MAX:
        return direct
    return _fit(f"{NAME_PREFIX}-{_slug(job_id)}", _short_hash(job_id, 12))


def job_id_from_transform_job_name(name: str) -> str | None:
    """The router job id behind a transform job name, when the name is in the direct form
    (`router-job-<ULID>` -> `job_<ULID>`): lets the EventBridge handler find the job without a
    lookup. None for any other name (a hashed name cannot be reversed; its last segment is 12
    hex characters, never a 26-character ULID, so the two forms cannot be confused)."""
    prefix = f"{NAME_PREFIX}-"
    if not name.startswith(prefix):
        return None
    job_id = name[len(prefix):].replace("-", "_")
    return job_id if _ULID_JOB_ID_RE.match(job_id) and transform_job_name(job_id) == name else None


def sagemaker_model_name(model: ModelSpec) -> str:
    """The SageMaker Model for a model version: `router-<name>-<sha256 prefix>`.

    Keyed by the artifact digest, so a new artifact is a new Model (and a new endpoint config),
    and the same artifact deploys to the same Model. When the name had to be altered to fit
    SageMaker's alphabet, a hash of the exact name keeps two models apart.
    """
    slug = _slug(model.name)
    tail = model.sha256[:12]
    if slug != model.name:
        tail = f"{tail}-{_short_hash(model.name, 4)}"
    return _fit(f"{NAME_PREFIX}-{slug}", tail)
