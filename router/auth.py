"""Who is calling: the job owner for every request (docs/api.md "Authentication and ownership").

On AWS, API Gateway has already authenticated the caller (IAM SigV4 or an authorizer): the owner is
the identity in the request context. Locally, `Authorization: Bearer <key>` maps to an owner through
the config's `auth.api_keys`, or everything is owner `local` when the operator turned auth off.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any, Protocol

from router.errors import Unauthorized


class Authenticator(Protocol):
    def owner(self, event: Mapping[str, Any]) -> str: ...


def _header(event: Mapping[str, Any], name: str) -> str | None:
    headers = event.get("headers") or {}
    lname = name.lower()
    for k, v in headers.items():
        if k.lower() == lname:
            return str(v) if v is not None else None
    return None


class ApiKeyAuth:
    """Local bearer keys. Every key is compared in constant time (no early exit on a prefix)."""

    def __init__(self, api_keys: Mapping[str, str]) -> None:
        self._keys = [(k.encode(), owner) for k, owner in api_keys.items()]

    def owner(self, event: Mapping[str, Any]) -> str:
        return self.owner_from_header(_header(event, "authorization"))

    def owner_from_header(self, value: str | None) -> str:
        """owner() given the request's Authorization header (the first `headers` entry of that name)."""
        if not value:
            raise Unauthorized("missing credentials: send 'Authorization: Bearer <api key>'")
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
        presented = token.encode()
        found: str | None = None
        for key, owner in self._keys:
            if hmac.compare_digest(key, presented):
                found = owner
        if found is None:
            raise Unauthorized("unknown API key")
        return found


class NoAuth:
    """Local runtime with auth off: one owner for everybody. Refused on AWS (bootstrap)."""

    def owner(self, event: Mapping[str, Any]) -> str:
        return "local"


# arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION (role names have no '/'; a role's path is not in it).
_ASSUMED_ROLE = re.compile(r"^(arn:aws[a-z-]*:sts::\d{12}:assumed-role/[^/]+)/(.+)$")
# IAM Identity Center roles: the session name is the signed-in person (stable across sessions).
_PER_PERSON_ROLE = re.compile(r"^arn:aws[a-z-]*:sts::\d{12}:assumed-role/AWSReservedSSO_[^/]+$")


def principal(user_arn: str) -> str:
    """The owner an IAM caller's ARN stands for: an assumed-role session is owned by its role (a new
    session of the same role sees the same jobs), except for IAM Identity Center roles, whose
    session name is the person; any other ARN (IAM user, root, federated user) is itself."""
    m = _ASSUMED_ROLE.match(user_arn)
    if m is None or _PER_PERSON_ROLE.match(m.group(1)):
        return user_arn
    return m.group(1)


class IamAuth:
    """AWS: the identity API Gateway put in the request context (JWT `sub`, the authorizer's
    principal, or the SigV4 caller's ARN mapped by `principal`), in that order."""

    def owner(self, event: Mapping[str, Any]) -> str:
        ctx = event.get("requestContext") or {}
        authorizer = ctx.get("authorizer") or {}
        claims = authorizer.get("claims") or {}
        jwt = (authorizer.get("jwt") or {}).get("claims") or {}
        identity = ctx.get("identity") or {}
        for candidate in (claims.get("sub"), jwt.get("sub"), authorizer.get("principalId")):
            if candidate:
                return str(candidate)
        arn = identity.get("userArn")
        if arn:
            return principal(str(arn))
        caller = identity.get("caller")  # without an ARN, whether a role is per person is unknown: kept whole
        if caller:
            return str(caller)
        raise Unauthorized("the request carries no caller identity (is IAM auth enabled on the API?)")
