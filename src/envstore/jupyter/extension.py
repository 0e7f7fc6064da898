"""The ``jupyter_server`` extension: re-sync envstore kernelspecs on start and every few minutes.

Enabled by the ``jupyter_server_config.d/envstore.json`` file that ``pip install
envstore[jupyter]`` puts in ``<prefix>/etc/jupyter``. A daemon thread runs the same sync as
``envstore kernels sync --user`` (or into ``ENVSTORE_KERNELS_DIR``) every
``ENVSTORE_KERNELS_SYNC_INTERVAL`` seconds (default 300; 0 syncs once), off the server's event
loop. While envstore cannot be reached the kernelspecs stay as they are and the log says so once.

In a JupyterHub single-user server without ``ENVSTORE_TOKEN`` or a stored token, the server's
hub token is traded for an envstore token of the same hub user, put into this process's
``ENVSTORE_TOKEN`` so kernels started here inherit it, and renewed twice a day.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from envstore.errors import EnvstoreError
from envstore.jupyter.connection import exchange_hub_token, open_client, server_url, user_token
from envstore.jupyter.kernelspecs import SyncReport, kernels_dir, sync_kernelspecs

__all__ = ["KernelSync"]

_DEFAULT_INTERVAL = 300.0
_HUB_TOKEN_RENEW_SECONDS = 12 * 3600.0


class KernelSync:
    """One background loop per server process."""

    def __init__(self, log: logging.Logger, interval: float, directory: Path) -> None:
        self.log = log
        self.interval = interval
        self.directory = directory
        self.url = server_url()
        self.stopped = threading.Event()
        self._offline = False
        self._hub_token_at: float | None = None

    def _ensure_token(self) -> None:
        hub_token = os.environ.get("JUPYTERHUB_API_TOKEN")
        if not hub_token:
            return
        fresh = self._hub_token_at is not None and (
            time.monotonic() - self._hub_token_at < _HUB_TOKEN_RENEW_SECONDS
        )
        if fresh or (self._hub_token_at is None and user_token(self.url)):
            return
        os.environ["ENVSTORE_TOKEN"] = exchange_hub_token(self.url, hub_token)
        self._hub_token_at = time.monotonic()
        self.log.info("envstore: signed in to %s as this hub user", self.url)

    def sync_once(self) -> None:
        report: SyncReport | None = None
        try:
            self._ensure_token()
            with open_client(self.url) as client:
                report = sync_kernelspecs(client, self.directory)
            reason = report.offline
        except EnvstoreError as exc:
            reason = exc.message
        if reason is not None:
            if not self._offline:
                self.log.warning("envstore: %s; envstore kernelspecs left as they are", reason)
            self._offline = True
            return
        self._offline = False
        if report is not None and (report.written or report.removed):
            self.log.info(
                "envstore: kernelspecs written %s, removed %s", report.written, report.removed
            )

    def run(self) -> None:
        while not self.stopped.is_set():
            self.sync_once()
            if self.interval <= 0:
                return
            self.stopped.wait(self.interval)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="envstore-kernel-sync", daemon=True)
        thread.start()
        return thread


def _interval() -> float:
    raw = os.environ.get("ENVSTORE_KERNELS_SYNC_INTERVAL", "")
    try:
        return float(raw) if raw else _DEFAULT_INTERVAL
    except ValueError:
        return _DEFAULT_INTERVAL


def _load_jupyter_server_extension(serverapp: Any) -> None:
    configured = os.environ.get("ENVSTORE_KERNELS_DIR")
    directory = Path(configured) if configured else kernels_dir(user=True)
    syncer = KernelSync(serverapp.log, _interval(), directory)
    serverapp.log.info("envstore: syncing kernelspecs into %s", directory)
    syncer.start()
