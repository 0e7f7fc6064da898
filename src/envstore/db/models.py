"""SQLAlchemy 2 tables. Tables carry no business logic; query functions live beside them.

Datetimes are stored naive in UTC (the API serialises them without an offset, as the
conda-store UI expects).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ApiToken",
    "ArtifactJob",
    "AuditEvent",
    "Base",
    "BlobHold",
    "Build",
    "BuildArtifact",
    "BuildLogChunk",
    "BuildPackage",
    "Channel",
    "CurrentBuildSwitch",
    "Environment",
    "Group",
    "LoginSession",
    "Namespace",
    "NamespaceRoleMapping",
    "Package",
    "Setting",
    "SettingChange",
    "Specification",
    "User",
    "UserGroup",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, int: Integer}


class Namespace(Base):
    __tablename__ = "namespace"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deleted_on: Mapped[datetime | None] = mapped_column(DateTime)


class Environment(Base):
    __tablename__ = "environment"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespace.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    current_build_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "build.id", use_alter=True, name="fk_environment_current_build", ondelete="SET NULL"
        )
    )
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    deleted_on: Mapped[datetime | None] = mapped_column(DateTime)

    namespace: Mapped[Namespace] = relationship(lazy="joined", innerjoin=True)
    current_build: Mapped[Build | None] = relationship(
        foreign_keys=[current_build_id], lazy="raise"
    )


class Specification(Base):
    __tablename__ = "specification"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # pypi | conda | lockfile
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Build(Base):
    __tablename__ = "build"
    __table_args__ = (
        Index("ix_build_status", "status"),
        Index("ix_build_environment", "environment_id", "id"),
        Index("ix_build_submitter_time", "submitted_by", "scheduled_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    specification_id: Mapped[int] = mapped_column(ForeignKey("specification.id"))
    status: Mapped[str] = mapped_column(String(16), default="QUEUED")
    status_info: Mapped[str | None] = mapped_column(Text)
    build_key: Mapped[str | None] = mapped_column(String(512), unique=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    as_of: Mapped[datetime | None] = mapped_column(DateTime)
    python_version: Mapped[str | None] = mapped_column(String(32))
    lockfile_text: Mapped[str | None] = mapped_column(Text)  # a submitted lockfile (is_lockfile)
    # the spec after policy (defaults, included packages, channels) and what policy added, why
    effective_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    policy_additions: Mapped[list[Any] | None] = mapped_column(JSON)
    submitted_by: Mapped[str | None] = mapped_column(String(255))  # user name; None before 0006
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_on: Mapped[datetime | None] = mapped_column(DateTime)
    # when the build was last handed to the broker (distributed mode); NULL: not yet, or
    # queued again since, so the reaper dispatches it on its next pass
    dispatched_on: Mapped[datetime | None] = mapped_column(DateTime)
    log_size: Mapped[int] = mapped_column(BigInteger, default=0)
    scheduled_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_on: Mapped[datetime | None] = mapped_column(DateTime)
    ended_on: Mapped[datetime | None] = mapped_column(DateTime)
    deleted_on: Mapped[datetime | None] = mapped_column(DateTime)

    environment: Mapped[Environment] = relationship(foreign_keys=[environment_id], lazy="raise")
    specification: Mapped[Specification] = relationship(lazy="raise")
    artifacts: Mapped[list[BuildArtifact]] = relationship(lazy="raise", order_by="BuildArtifact.id")


class BuildArtifact(Base):
    __tablename__ = "build_artifact"
    __table_args__ = (UniqueConstraint("build_id", "artifact_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(ForeignKey("build.id", ondelete="CASCADE"), index=True)
    artifact_type: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(1024))  # blob digest or path relative to the store
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class BlobHold(Base):
    """One row per stored blob that a publisher or the garbage collector has touched: the row
    lock that orders "make sure the blob is there, then link it" against "check it is unlinked,
    then delete it" (D6). It carries no data beyond when it was last held."""

    __tablename__ = "blob_hold"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    held_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ArtifactJob(Base):
    """Packing a COMPLETED build's archive and image, after the build (issue 11): a queue of
    its own, claimed by the same workers when no build waits. ``pack_key`` names what the
    files depend on (lockfile and packing settings): builds with the same key share blobs."""

    __tablename__ = "artifact_job"
    __table_args__ = (
        Index("ix_artifact_job_status", "status"),
        Index("ix_artifact_job_pack_key", "pack_key"),
    )

    build_id: Mapped[int] = mapped_column(
        ForeignKey("build.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), default="QUEUED")
    kinds: Mapped[list[str]] = mapped_column(JSON)
    pack_key: Mapped[str | None] = mapped_column(String(64))
    info: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_on: Mapped[datetime | None] = mapped_column(DateTime)
    # when the distributed mode last handed the job to the broker (None: never, or requeued)
    dispatched_on: Mapped[datetime | None] = mapped_column(DateTime)
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_on: Mapped[datetime | None] = mapped_column(DateTime)


class BuildLogChunk(Base):
    """The build log as append-only chunks, so appending never rewrites what is there (W10)."""

    __tablename__ = "build_log_chunk"

    build_id: Mapped[int] = mapped_column(
        ForeignKey("build.id", ondelete="CASCADE"), primary_key=True
    )
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(Text)


class Channel(Base):
    __tablename__ = "channel"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), unique=True)
    last_update: Mapped[datetime | None] = mapped_column(DateTime)


class Package(Base):
    __tablename__ = "package"
    __table_args__ = (
        UniqueConstraint("channel_id", "manager", "name", "version", "build", "sha256"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channel.id"))
    manager: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[str] = mapped_column(String(128))
    build: Mapped[str] = mapped_column(String(255), default="")
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str | None] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)

    channel: Mapped[Channel] = relationship(lazy="joined", innerjoin=True)


class BuildPackage(Base):
    __tablename__ = "build_package"

    build_id: Mapped[int] = mapped_column(
        ForeignKey("build.id", ondelete="CASCADE"), primary_key=True
    )
    package_id: Mapped[int] = mapped_column(ForeignKey("package.id"), primary_key=True, index=True)
    requested: Mapped[bool] = mapped_column(Boolean, default=False)

    package: Mapped[Package] = relationship(lazy="joined", innerjoin=True)


class CurrentBuildSwitch(Base):
    """Every change of an environment's current build: who, when, from, to."""

    __tablename__ = "current_build_switch"
    __table_args__ = (Index("ix_switch_env_time", "environment_id", "switched_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    from_build_id: Mapped[int | None] = mapped_column(Integer)
    to_build_id: Mapped[int | None] = mapped_column(Integer)
    switched_by: Mapped[str] = mapped_column(String(255))
    switched_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Setting(Base):
    """The current value of one policy setting at one level (empty names: global); merged
    global → namespace → environment by ``core.policy_settings``."""

    __tablename__ = "setting"
    __table_args__ = (UniqueConstraint("namespace", "environment", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255), default="")
    environment: Mapped[str] = mapped_column(String(255), default="")
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[Any] = mapped_column(JSON)


class User(Base):
    """A person who can log in: a local account (``password_hash``) or one from a provider."""

    __tablename__ = "auth_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(32), default="local")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_on: Mapped[datetime | None] = mapped_column(DateTime)


class Group(Base):
    __tablename__ = "auth_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class UserGroup(Base):
    __tablename__ = "auth_user_group"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("auth_user.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(
        ForeignKey("auth_group.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ApiToken(Base):
    """An API token; only the sha256 of its secret is stored (A4)."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_user.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255), default="")
    primary_namespace: Mapped[str] = mapped_column(String(255))
    role_bindings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_on: Mapped[datetime] = mapped_column(DateTime)
    last_used_on: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_on: Mapped[datetime | None] = mapped_column(DateTime)


class LoginSession(Base):
    """A browser sign-in (the ``conda-store-auth`` cookie names it); only the sha256 of its
    secret is stored. Deleting the row ends the session at the very next request (A11)."""

    __tablename__ = "login_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_user.id", ondelete="CASCADE"), index=True)
    created_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_on: Mapped[datetime] = mapped_column(DateTime)


class NamespaceRoleMapping(Base):
    """A role on ``{namespace}/*`` for an entity: ``user:NAME``, ``group:NAME``,
    ``namespace:NAME`` (namespace-to-namespace sharing) or ``*`` (every signed-in user)."""

    __tablename__ = "namespace_role_mapping"
    __table_args__ = (UniqueConstraint("namespace_id", "entity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace_id: Mapped[int] = mapped_column(ForeignKey("namespace.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(255), index=True)
    role: Mapped[str] = mapped_column(String(16))


class SettingChange(Base):
    """Every change of a setting: who, when, the value before and after (None: unset)."""

    __tablename__ = "setting_change"
    __table_args__ = (Index("ix_setting_change_level", "namespace", "environment", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(255), default="")
    environment: Mapped[str] = mapped_column(String(255), default="")
    key: Mapped[str] = mapped_column(String(255))
    old_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    new_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    changed_by: Mapped[str] = mapped_column(String(255))
    changed_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuditEvent(Base):
    """One change made through envstore: who, when, from where, what, before and after.

    Append-only: the application inserts rows in the transaction of the change they record and
    has no path that updates or deletes them."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_time", "occurred_on"),
        Index("ix_audit_namespace", "namespace", "occurred_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_on: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))  # environment.submit, setting.update, ...
    namespace: Mapped[str | None] = mapped_column(String(255))
    environment: Mapped[str | None] = mapped_column(String(255))
    target: Mapped[str] = mapped_column(String(255), default="")  # "build 12", "token 3"
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
