"""envstore: a server that manages the whole life of conda and PyPI environments."""

from envstore.errors import EnvstoreError
from envstore.settings import Settings, load_settings

__all__ = ["EnvstoreError", "Settings", "__version__", "load_settings"]

__version__ = "0.1.0"
