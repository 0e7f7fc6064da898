"""The one typed settings object of envstore.

Read from ``ENVSTORE_*`` environment variables (and an optional TOML file named by
``ENVSTORE_CONFIG``), validated once at start and passed down explicitly. Nothing reads the
environment at import time.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "load_settings"]


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
    build_timeout: float = Field(default=3600.0, gt=0, description="seconds per build attempt")
    solve_timeout: float = Field(default=600.0, gt=0, description="seconds for the solve stage")
    max_build_attempts: int = Field(default=2, ge=1, le=10)
    heartbeat_interval: float = Field(default=2.0, gt=0)
    heartbeat_timeout: float = Field(default=30.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)

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
