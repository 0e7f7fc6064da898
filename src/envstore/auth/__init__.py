"""Identity: who is calling. Until the access-control issue lands the server runs as one
trusted user; everything that needs the caller takes a :class:`Principal`."""

from envstore.auth.principal import LOCAL_PRINCIPAL, Principal

__all__ = ["LOCAL_PRINCIPAL", "Principal"]
