"""The caller of a request, as services see it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LOCAL_PRINCIPAL", "Principal"]


@dataclass(frozen=True)
class Principal:
    name: str
    primary_namespace: str
    authenticated: bool = True


LOCAL_PRINCIPAL = Principal(name="local", primary_namespace="default")
