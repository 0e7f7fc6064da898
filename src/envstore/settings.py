"""The one typed settings object of envstore.

Read from ``ENVSTORE_*`` environment variables (and an optional TOML file named by
``ENVSTORE_CONFIG``), validated once at start and passed down explicitly. Nothing reads the
environment at import time.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from envstore.core.channels import DEFAULT_CHANNEL_ALLOW, ChannelRules

__all__ = ["ChannelCredential", "Settings", "load_settings"]


class ChannelCredential(BaseModel):
    """Credentials for one channel URL prefix: a bearer ``token``, or ``username``+``password``."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ChannelCredential:
        token = self.token is not None
        basic = self.username is not None and self.password is not None
        partial = (self.username is None) != (self.password is None)
        if token == basic or partial:
            raise ValueError("give either 'token' or both 'username' and 'password'")
        return self

    def as_dict(self) -> dict[str, str]:
        """The plain values, only for handing them to the build process."""
        if self.token is not None:
            return {"token": self.token.get_secret_value()}
        assert self.username is not None and self.password is not None
        return {"username": self.username, "password": self.password.get_secret_value()}


class Settings(BaseSettings):
    """Every knob of the server, with production-sane defaults for one machine."""

    model_config = SettingsConfigDict(env_prefix="ENVSTORE_", extra="forbid")

    store_dir: Path = Path(".envstore")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite in <store>/state/"
    )
    url_prefix: str = "/"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(default=2, ge=0, le=64, description="concurrent builds (0: no workers)")
    api_processes: int = Field(
        default=1, ge=1, le=64, description="API processes of envstore serve on one port"
    )
    build_timeout: float = Field(default=3600.0, gt=0, description="seconds per build attempt")
    solve_timeout: float = Field(default=600.0, gt=0, description="seconds for the solve stage")
    max_build_attempts: int = Field(default=2, ge=1, le=10)
    heartbeat_interval: float = Field(default=2.0, gt=0)
    max_long_polls: int = Field(
        default=1000,
        ge=0,
        description="requests that may wait on a build at once (?wait=); more are answered at once",
    )
    runner_idle_seconds: float = Field(
        # a warm runner holds ~65-75 MB (py-rattler's runtime after an install): two of them
        # would double an idle server's memory, so they leave soon after a burst of builds
        default=120.0,
        ge=0,
        description="a worker's build process (imports done, caches warm) exits after this "
        "long without a build; 0: one process per build",
    )
    runner_max_builds: int = Field(
        default=100, ge=1, description="builds one build process runs before it is replaced"
    )
    heartbeat_timeout: float = Field(default=30.0, gt=0)
    db_retry_seconds: float = Field(
        default=600.0, ge=0, description="how long workers retry recording a build's outcome"
    )
    shutdown_grace: float = Field(
        default=20.0, ge=0, description="seconds running builds get to finish on shutdown"
    )
    cors_origins: list[str] = Field(default_factory=list)
    ready_min_free_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=0,
        description="/readyz answers 503 when the store's disk has less free space than this",
    )

    # Distributed mode (docs/deploy.md): API processes dispatch builds to Celery workers
    broker_url: str | None = Field(
        default=None,
        description="Celery broker (redis://... or amqp://...); unset: embedded workers only",
    )
    queue_prefix: str = Field(
        default="envstore",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="names the broker queues <prefix>.builds, .artifacts, .gc",
    )
    reap_interval: float = Field(
        default=5.0, gt=0, description="seconds between two passes of the distributed reaper"
    )
    redispatch_seconds: float = Field(
        default=600.0,
        gt=0,
        description="a QUEUED build dispatched this long ago and still unclaimed is sent again",
    )
    retry_backoff: float = Field(
        default=10.0, ge=0, description="first delay before a lost build runs again; doubles"
    )
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="envstore worker: serve /metrics on this port"
    )

    # Input bounds (RELIABILITY.md I1-I4)
    max_spec_bytes: int = Field(default=256 * 1024, ge=1024)
    max_packages: int = Field(default=500, ge=1)
    max_yaml_depth: int = Field(default=20, ge=4)
    max_yaml_aliases: int = Field(default=16, ge=0)
    max_name_length: int = Field(default=128, ge=8, le=255)
    max_log_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    # PyPI backend
    pypi_index_url: str | None = None
    default_python: str = Field(default="3.11", description="Python used when a spec names none")

    # Artifacts, blob storage and retention (issue 4)
    build_artifacts: list[str] = Field(
        default_factory=lambda: ["LOCKFILE", "YAML", "LOGS", "CONDA_PACK", "DOCKER_MANIFEST"],
        description="artifacts each build produces (LOCKFILE, YAML, LOGS are always kept)",
    )
    oci_prefix: str = Field(default="/opt/env", description="where the image holds the env")
    oci_base_layer: Path | None = Field(
        default=None, description="a .tar or .tar.gz root filesystem put under every image"
    )
    oci_layer_compression: Literal["zstd", "gzip"] = Field(
        default="zstd",
        description="image layers: zstd (Docker 23+, podman 4+), gzip for older clients",
    )
    oci_zstd_level: int = Field(
        default=3,
        ge=1,
        le=19,
        description="zstd level of image layers: 3 as the zstd CLI; 2 costs ~30 % less CPU for "
        "~8 % more bytes, 1 ~40 % less for ~19 % more (part of the pack key)",
    )
    # below the 30 s read timeout of envstore's CLI: a client gets the 404 naming the state
    # rather than a timeout of its own
    artifact_wait_seconds: float = Field(
        default=20.0,
        ge=0,
        le=300,
        description="how long archive/ and docker/ wait for a build's pack job by default",
    )
    blob_store: str = Field(default="local", pattern="^(local|s3)$")
    s3_bucket: str | None = None
    s3_prefix: str = "blobs/sha256/"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_presign_seconds: int = Field(default=300, ge=10, le=3600)
    s3_retry_seconds: float = Field(default=120.0, ge=0)
    gc_keep_last: int | None = Field(default=None, ge=1, description="builds kept per env")
    gc_keep_days: float | None = Field(default=None, gt=0, description="keep builds newer")
    gc_failed_days: float | None = Field(default=None, ge=0, description="keep failed builds")
    gc_grace_seconds: float = Field(default=3600.0, ge=0, description="unreferenced data age")
    gc_interval: float = Field(default=3600.0, ge=0, description="periodic GC (0: never)")

    # Conda backend
    channel_alias: str = Field(
        default="https://conda.anaconda.org/", description="where channel names resolve"
    )
    channel_allow: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CHANNEL_ALLOW),
        description="channel URL prefixes builds may fetch from (README 'Channels'); JSON list",
    )
    channel_credentials: dict[str, ChannelCredential] = Field(
        default_factory=dict,
        description="channel URL prefix -> token (bearer) or username/password (basic)",
    )
    conda_platform: str | None = Field(default=None, description="conda subdir; default: host")
    virtual_packages: dict[str, str | None] = Field(
        default_factory=dict,
        description="__cuda/__glibc/... version (or version=build) overrides; null removes one",
    )
    run_link_scripts: bool = Field(default=False, description="run packages' post-link scripts")
    solve_request_timeout: float = Field(
        default=30.0, gt=0, description="seconds for GET /specification/ (solve only)"
    )
    max_concurrent_solves: int = Field(default=2, ge=1, le=64)

    # Identity and access (README "Access control")
    secret: SecretStr | None = Field(
        default=None,
        description="signs login cookies; default: generated once into <store>/state/secret",
    )
    development_mode: bool = Field(
        default=False, description="allow a known default secret (never in production)"
    )
    cookie_max_age: int = Field(default=7 * 24 * 3600, ge=60, description="login lifetime, s")
    cookie_secure: bool = Field(default=False, description="send the cookie over HTTPS only")
    token_max_lifetime: int = Field(
        default=365 * 24 * 3600, ge=60, description="seconds; also the default expiry of tokens"
    )
    local_login: bool = Field(default=True, description="accept local accounts at /login/")
    submit_quota_per_minute: int = Field(
        default=120,
        ge=0,
        description="new builds one user may queue per minute before 429 (0: no quota)",
    )
    login_max_failures_per_user: int = Field(
        default=10, ge=1, description="failed logins of one user name per window before 429"
    )
    login_max_failures_per_address: int = Field(
        default=30, ge=1, description="failed logins from one client address per window"
    )
    login_failure_window: float = Field(
        default=600.0, gt=0, description="seconds over which failed logins are counted"
    )
    login_hash_concurrency: int = Field(
        # Argon2id takes ~90 ms of one core and 64 MiB per check: bounded, a flood of logins
        # cannot take the thread pool or the CPU from the rest of the API
        default=1,
        ge=1,
        le=64,
        description="password checks run at once",
    )
    login_max_waiting: int = Field(
        default=32, ge=0, description="logins waiting for a password check; more get 503"
    )
    user_role_bindings: dict[str, list[str]] = Field(
        default_factory=lambda: {"{username}/*": ["admin"]},
        description="what every signed-in user holds; {username} is filled in",
    )
    authenticated_role_bindings: dict[str, list[str]] = Field(
        default_factory=lambda: {"default/*": ["viewer"]}
    )
    anonymous_role_bindings: dict[str, list[str]] = Field(default_factory=dict)
    group_role_bindings: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="group name -> {pattern: [roles]}"
    )
    oauth_provider: str | None = Field(
        default=None, pattern="^(oidc|jupyterhub)$", description="external login: oidc|jupyterhub"
    )
    oauth_client_id: str = ""
    oauth_client_secret: SecretStr = SecretStr("")
    oauth_authorize_url: str = ""
    oauth_token_url: str = ""
    oauth_userinfo_url: str = ""
    oauth_scopes: str = "openid profile email groups"
    oauth_username_claim: str = "preferred_username"
    oauth_groups_claim: str = "groups"
    oauth_callback_url: str = Field(
        default="", description="public URL of {prefix}/oauth_callback/ when behind a proxy"
    )
    jupyterhub_url: str = Field(default="", description="e.g. https://hub.example.org")
    jupyterhub_api_url: str = Field(
        default="",
        description="the hub API as envstore reaches it; default {jupyterhub_url}/hub/api",
    )
    jupyterhub_service_name: str = Field(
        default="envstore", description="envstore's name in the hub's c.JupyterHub.services"
    )
    jupyterhub_token_lifetime: int = Field(
        default=86400, ge=60, description="seconds an envstore token traded for a hub token lasts"
    )

    @model_validator(mode="after")
    def _check_channel_allow(self) -> Settings:
        try:
            self.channel_rules  # noqa: B018 -- parses every entry
        except ValueError as exc:
            raise ValueError(f"ENVSTORE_CHANNEL_ALLOW: {exc}") from None
        return self

    @property
    def channel_rules(self) -> ChannelRules:
        return ChannelRules(self.channel_alias, tuple(self.channel_allow))

    @field_validator("url_prefix")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        value = "/" + value.strip("/")
        return "" if value == "/" else value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'envstore.db'}"

    @property
    def resolved_jupyterhub_api_url(self) -> str:
        if self.jupyterhub_api_url:
            return self.jupyterhub_api_url.rstrip("/")
        return f"{self.jupyterhub_url.rstrip('/')}/hub/api"

    @property
    def is_embedded_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def state_dir(self) -> Path:
        return self.store_dir / "state"

    @property
    def envs_dir(self) -> Path:
        return self.store_dir / "envs"

    @property
    def blobs_dir(self) -> Path:
        return self.store_dir / "blobs" / "sha256"

    @property
    def uv_cache_dir(self) -> Path:
        return self.store_dir / "cache" / "uv"

    @property
    def work_dir(self) -> Path:
        """Per-build scratch space (requests, results); removed after each build."""
        return self.store_dir / "work"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment, an optional TOML file and explicit overrides."""
    values: dict[str, Any] = {}
    config_file = os.environ.get("ENVSTORE_CONFIG")
    if config_file:
        with Path(config_file).open("rb") as handle:
            values.update(tomllib.load(handle))
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    settings.store_dir = settings.store_dir.resolve()
    return settings
