"""The caller of a request, as services see it: a name and the role bindings it holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from envstore.core.permissions import Permission, Role, RoleBinding, allowed, granting
from envstore.errors import Forbidden

__all__ = ["LOCAL_PRINCIPAL", "Principal"]

_EVERYTHING = (RoleBinding("*/*", Role.ADMIN),)


@dataclass(frozen=True)
class Principal:
    """Who is calling and what they hold.

    ``bindings`` are the caller's role bindings. A token narrowed at creation also carries
    ``limit``: a permission needs both the owner's current bindings and the token's own, so a
    token never outgrows its owner, even after the owner loses a role.
    """

    name: str
    primary_namespace: str
    authenticated: bool = True
    bindings: tuple[RoleBinding, ...] = _EVERYTHING
    limit: tuple[RoleBinding, ...] | None = None
    groups: tuple[str, ...] = ()
    user_id: int | None = None
    token_id: int | None = None
    expiration: datetime | None = field(default=None, compare=False)
    address: str | None = field(default=None, compare=False)  # the client's, for the audit log

    def can(self, permission: Permission, namespace: str, environment: str = "*") -> bool:
        if not allowed(self.bindings, permission, namespace, environment):
            return False
        return self.limit is None or allowed(self.limit, permission, namespace, environment)

    def require(self, permission: Permission, namespace: str, environment: str = "*") -> None:
        """Raise :class:`Forbidden` (``request not authorized``) unless :meth:`can`."""
        if not self.can(permission, namespace, environment):
            raise Forbidden()

    def can_somewhere(self, permission: Permission) -> bool:
        """Whether some pattern grants ``permission`` (a cheap first gate, before parsing)."""
        if not granting(self.bindings, permission):
            return False
        return self.limit is None or bool(granting(self.limit, permission))

    def can_in_namespace(self, permission: Permission, namespace: str) -> bool:
        """Whether ``permission`` is granted on at least one environment name of ``namespace``."""

        def some(bindings: tuple[RoleBinding, ...]) -> bool:
            return any(
                allowed((b,), permission, namespace, b.environment_part)
                for b in granting(bindings, permission)
            )

        return some(self.bindings) and (self.limit is None or some(self.limit))

    def can_everywhere(self, permission: Permission) -> bool:
        return self.can(permission, "*", "*")

    @property
    def effective_bindings(self) -> tuple[RoleBinding, ...]:
        """What ``/permission/`` reports: the token's narrowing when there is one."""
        return self.limit if self.limit is not None else self.bindings


# The trusted identity of server-side jobs (workers, the reaper), never of a request.
LOCAL_PRINCIPAL = Principal(name="local", primary_namespace="default")
