"""Choose the blob store the settings name (``blob_store = "local" | "s3"``).

The S3 store (boto3, ~9 MB) is imported only when the settings name it (issue 11).
"""

from __future__ import annotations

from envstore.errors import InvalidInput
from envstore.settings import Settings
from envstore.storage.blobstore import BlobStore
from envstore.storage.local import LocalBlobStore

__all__ = ["make_blob_store"]


def make_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_store == "local":
        return LocalBlobStore(settings.blobs_dir)
    if not settings.s3_bucket:
        raise InvalidInput("blob_store = 's3' needs s3_bucket")
    from envstore.storage.s3 import S3BlobStore

    secret = settings.s3_secret_access_key
    return S3BlobStore(
        settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key=settings.s3_access_key_id,
        secret_key=secret.get_secret_value() if secret else None,
        presign_seconds=settings.s3_presign_seconds,
        retry_seconds=settings.s3_retry_seconds,
    )
