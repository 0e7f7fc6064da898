"""What ``/readyz`` checks besides the database: the broker and the blob store.

A process is ready when it can take a request end to end: store a build (database), hand it to
the workers (broker, distributed mode only) and serve artifacts (blob store). Each check is
bounded by a few seconds, so a probe never hangs on a dead dependency.
"""

from __future__ import annotations

from envstore.errors import EnvstoreError
from envstore.jobs.celery_app import Broker
from envstore.storage import BlobStore

__all__ = ["unready_dependency"]

_PROBE_DIGEST = "0" * 64  # a digest no artifact has: its lookup touches the store only


def unready_dependency(broker: Broker | None, blobs: BlobStore) -> str | None:
    """A message naming the first dependency that does not answer, else None."""
    if broker is not None:
        try:
            broker.ping()
        except Exception:
            return "broker unavailable"
    try:
        blobs.exists(_PROBE_DIGEST)
    except (EnvstoreError, OSError):
        return "blob store unavailable"
    return None
