"""envstore in Jupyter: kernelspecs for envstore environments, the kernel launcher, and the
``jupyter_server`` extension that keeps the kernelspecs in step (``pip install envstore[jupyter]``).

Like the CLI, this package talks to the envstore server over HTTP only; it runs on the user's
machine or in a single-user notebook server, never on the envstore host's database or store.
"""

from __future__ import annotations

from typing import Any

from envstore.jupyter.kernelspecs import KERNEL_PREFIX, SyncReport, kernels_dir, sync_kernelspecs
from envstore.jupyter.launcher import launch_kernel

__all__ = ["KERNEL_PREFIX", "SyncReport", "kernels_dir", "launch_kernel", "sync_kernelspecs"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Found by ``jupyter_server`` through ``ServerApp.jpserver_extensions`` (enabled by the
    ``jupyter_server_config.d/envstore.json`` file the wheel installs)."""
    return [{"module": "envstore.jupyter.extension"}]
