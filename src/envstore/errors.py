"""The one exception tree of envstore.

Domain, service and pipeline code raise these; only ``envstore.api`` maps them to HTTP, and the
CLI maps them to exit codes. No HTTP status codes appear here::

    EnvstoreError
     ├── NotFound                 a namespace, environment, build, artifact... does not exist
     ├── Conflict                 it exists already, or is in the wrong state for the request
     ├── Forbidden                the caller may not do this
     ├── InvalidInput             the request itself is wrong
     │    ├── InvalidName          a name breaks the name grammar
     │    ├── InvalidSpec          a specification or lockfile cannot be used
     │    └── LimitExceeded        a configured bound was crossed (names the limit)
     │         └── PayloadTooLarge  the request body is over the size limit
     ├── PolicyViolation          organisation policy refuses a channel, index or package
     ├── TooManyRequests          the caller must slow down (``retry_after`` seconds)
     ├── Unavailable              a dependency (database, queue) is down; retry later
     └── BuildFailure             a build stage failed; ``reason`` is a stable machine code
"""

from __future__ import annotations

__all__ = [
    "BuildFailure",
    "Conflict",
    "EnvstoreError",
    "Forbidden",
    "InvalidInput",
    "InvalidName",
    "InvalidSpec",
    "LimitExceeded",
    "NotFound",
    "PayloadTooLarge",
    "PolicyViolation",
    "TooManyRequests",
    "Unavailable",
]


class EnvstoreError(Exception):
    """Base of every error envstore raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(EnvstoreError):
    """The object named in the request does not exist (or is soft-deleted)."""


class Conflict(EnvstoreError):
    """The object exists already, or its state does not allow the request."""


class Forbidden(EnvstoreError):
    """The caller is not allowed to do this."""

    def __init__(self, message: str = "request not authorized") -> None:
        super().__init__(message)


class InvalidInput(EnvstoreError):
    """The request is malformed."""


class InvalidName(InvalidInput):
    """A namespace or environment name breaks the name grammar."""


class InvalidSpec(InvalidInput):
    """A specification, requirement list or lockfile cannot be used."""


class LimitExceeded(InvalidInput):
    """A configured bound was crossed; ``limit`` is the setting's name."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class PayloadTooLarge(LimitExceeded):
    """The request body is larger than ``max_spec_bytes``."""


class PolicyViolation(EnvstoreError):
    """Organisation policy refuses something in the request or the solved set."""


class TooManyRequests(EnvstoreError):
    """The caller tried too often (failed logins); it may try again after ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(EnvstoreError):
    """A service envstore depends on is down; the caller should retry later."""

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BuildFailure(EnvstoreError):
    """A build stage failed.

    ``reason`` is a short stable code stored in ``status_info`` (``solve_failed``,
    ``solve_timeout``, ``install_failed``, ``hash_mismatch``, ``no_space``, ``timeout``,
    ``worker_lost``, ``interpreter_not_found``...); ``message`` is for people.
    ``retryable`` says whether a new attempt could succeed.
    """

    def __init__(self, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
