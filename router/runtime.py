"""What one runtime hands its handlers: the config, the services, the authenticator and the object
store, built by a composition root (router.bootstrap: build_aws for Lambda, build_local for
`router serve`). Handlers type against this and call the services only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from router.auth import Authenticator
from router.config import RouterConfig
from router.ports import ObjectStore
from router.service import RouterService

if TYPE_CHECKING:  # imported by the runtimes that wire jobs, not by every cold start
    from router.adapters.file_store import FileObjectStore
    from router.jobs_service import JobsService

RuntimeKind = Literal["aws", "local"]


@dataclass
class Runtime:
    kind: RuntimeKind
    config: RouterConfig
    service: RouterService
    auth: Authenticator
    objects: ObjectStore
    jobs: JobsService | None = None  # None: this runtime serves no job routes
    files: FileObjectStore | None = None  # the store whose presigned URLs router serve's front serves; None on AWS
    closers: list[Callable[[], None]] = field(default_factory=list)
    starters: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        """Start background work (worker pool, sweeper, emulator): after the server is bound."""
        for start in self.starters:
            start()

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()
