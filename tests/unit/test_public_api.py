"""The public surface of each package is pinned: changing it is a deliberate act."""

from __future__ import annotations

import envstore
import envstore.storage


def test_top_level_names() -> None:
    assert envstore.__all__ == ["EnvstoreError", "Settings", "__version__", "load_settings"]
    for name in envstore.__all__:
        assert getattr(envstore, name) is not None


def test_storage_names() -> None:
    assert sorted(envstore.storage.__all__) == ["BlobStore", "LocalBlobStore", "StoreLayout"]


def test_ui_names() -> None:
    import envstore.ui

    assert sorted(envstore.ui.__all__) == ["error_page", "install_ui", "is_ui_path"]


def test_jupyter_names() -> None:
    import envstore.jupyter

    assert sorted(envstore.jupyter.__all__) == [
        "KERNEL_PREFIX",
        "SyncReport",
        "kernels_dir",
        "launch_kernel",
        "sync_kernelspecs",
    ]
    # what jupyter_server looks up when the config file enables "envstore.jupyter"
    points = envstore.jupyter._jupyter_server_extension_points()
    assert points == [{"module": "envstore.jupyter.extension"}]
