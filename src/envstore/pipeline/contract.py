"""The JSON contract between the job worker (parent) and the pipeline runner (child process).

The child never touches the database: it gets everything it needs in a :class:`BuildRequest`
(``request.json``), prints its log on stdout, and leaves either ``result.json``
(:class:`BuildResult`) or ``failure.json`` (:class:`BuildFailureInfo`) in ``work_dir``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "END_MARK",
    "FAILURE_FILE",
    "REQUEST_FILE",
    "RESULT_FILE",
    "BuildFailureInfo",
    "BuildRequest",
    "BuildResult",
    "PackRequest",
    "PackResult",
    "PackageInfo",
    "end_line",
    "is_pack_request",
    "parse_end",
]

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
FAILURE_FILE = "failure.json"

# A worker's runner serves builds one after another (``python -m envstore.pipeline.runner -``).
# For each build the worker writes ``"<nonce> <request path>\n"`` on its stdin; the runner
# prints the build's log on stdout and then one end line, ``END_MARK <nonce> <code> <next>``,
# where ``next`` is ``more`` (send the next build) or ``exit`` (this runner is leaving). The
# nonce, never shown to the build's own child processes, keeps a tool's output from faking it.
END_MARK = "\x1eenvstore-build-end"


def end_line(nonce: str, code: int, more: bool) -> str:
    """The line a runner prints after a build's log."""
    return f"{END_MARK} {nonce} {code} {'more' if more else 'exit'}"


def parse_end(line: str, nonce: str) -> tuple[int, bool] | None:
    """``(code, more)`` when ``line`` ends the build of ``nonce``, else None."""
    parts = line.rstrip("\r\n").split(" ")
    if len(parts) != 4 or parts[0] != END_MARK or parts[1] != nonce or not parts[2].isdigit():
        return None
    return int(parts[2]), parts[3] == "more"


@dataclass
class BuildRequest:
    """What one build attempt must produce, with every path already decided by the parent."""

    build_id: int
    build_key: str
    kind: Literal["pypi", "conda"]
    spec: dict[
        str, Any
    ]  # EnvironmentSpec.to_dict(): name, channels, dependencies (+ pip), variables
    prefix: str  # absolute path of the environment to create; must not exist yet
    work_dir: str  # scratch directory for this attempt; result/failure files go here
    uv_cache_dir: str
    conda_pkgs_dir: str
    repodata_cache_dir: str
    lockfile: str | None = None  # a submitted conda-lock v1 text: install exactly, never solve
    as_of: str | None = None  # ISO datetime (UTC, naive): ignore releases published after it
    pypi_index_url: str | None = None
    default_python: str = "3.11"
    platform: str | None = None  # conda subdir, default: the host's
    solve_timeout: float = 600.0
    channel_alias: str = "https://conda.anaconda.org/"
    channel_allow: list[str] = field(default_factory=lambda: ["https://"])  # ChannelRules.allow
    # channel URL prefix -> {"token"} or {"username", "password"}; secret: never log a request
    channel_credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    virtual_packages: dict[str, str | None] = field(default_factory=dict)  # server-wide overrides
    run_link_scripts: bool = False
    # the environment's effective policy (EffectivePolicy.to_json()): checked on the solved set
    # before install; its pins constrain the solvers
    policy: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        # Owner-only: the request may carry channel credentials.
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> BuildRequest:
        return cls(**json.loads(path.read_text()))


@dataclass
class PackageInfo:
    """One installed package, as recorded in the database."""

    name: str
    version: str
    manager: Literal["conda", "pip"]
    channel: str  # channel URL (conda) or index URL (pip)
    url: str
    sha256: str
    requested: bool
    build: str = ""
    md5: str | None = None
    license: str | None = None
    summary: str | None = None
    size: int | None = None


@dataclass
class BuildResult:
    lockfile: str  # conda-lock v1 YAML text
    pinned_yaml: str  # environment.yaml with every package pinned
    packages: list[PackageInfo]
    size: int  # bytes on disk of the prefix
    python_version: str | None = None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> BuildResult:
        data = json.loads(path.read_text())
        data["packages"] = [PackageInfo(**p) for p in data["packages"]]
        return cls(**data)


@dataclass
class BuildFailureInfo:
    reason: str  # stable code, e.g. solve_failed, hash_mismatch, no_space
    message: str
    retryable: bool = False

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> BuildFailureInfo:
        return cls(**json.loads(path.read_text()))


@dataclass
class PackRequest:
    """Pack a COMPLETED build's prefix into its archive and image files (a pack job, issue 11).

    Sent to the same runners as builds; ``job`` tells the two requests apart."""

    build_id: int
    prefix: str  # the published prefix: read, never written
    work_dir: str
    kinds: list[str]  # CONDA_PACK, DOCKER_MANIFEST
    variables: dict[str, str] = field(default_factory=dict)
    oci_prefix: str = "/opt/env"
    oci_base_layer: str | None = None
    layer_compression: Literal["gzip", "zstd"] = "zstd"
    zstd_level: int = 3
    job: Literal["pack"] = "pack"

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> PackRequest:
        return cls(**json.loads(path.read_text()))


@dataclass
class PackResult:
    # Files under work_dir/artifacts: artifact_type, role, path, sha256, size, media_type
    artifact_files: list[dict[str, Any]] = field(default_factory=list)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> PackResult:
        return cls(**json.loads(path.read_text()))


def is_pack_request(path: Path) -> bool:
    """True when the request file at ``path`` asks for a pack job rather than a build."""
    try:
        return bool(json.loads(path.read_text()).get("job") == "pack")
    except (OSError, ValueError, AttributeError):
        return False
