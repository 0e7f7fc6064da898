"""Where artifacts and prefixes live: the BlobStore protocol and the on-disk layout."""

from envstore.storage.blobstore import BlobStore
from envstore.storage.layout import StoreLayout
from envstore.storage.local import LocalBlobStore

__all__ = ["BlobStore", "LocalBlobStore", "StoreLayout"]
