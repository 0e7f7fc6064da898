"""Identity and access: who is calling (cookies, API tokens, login providers) and the
:class:`Principal` services check permissions on."""

from envstore.auth.principal import LOCAL_PRINCIPAL, Principal

__all__ = ["LOCAL_PRINCIPAL", "Principal"]
