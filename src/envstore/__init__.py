"""envstore: a server that manages the whole life of conda and PyPI environments.

The public names are loaded lazily: the build runner is a fresh process per build and should
not pay for importing the settings machinery it does not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EnvstoreError", "Settings", "__version__", "load_settings"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from envstore.errors import EnvstoreError
    from envstore.settings import Settings, load_settings


def __getattr__(name: str) -> Any:
    if name == "EnvstoreError":
        from envstore.errors import EnvstoreError

        return EnvstoreError
    if name in ("Settings", "load_settings"):
        from envstore import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'envstore' has no attribute {name!r}")
