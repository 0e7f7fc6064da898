"""The interpreter that lists a PyPI build's distributions is started before the install
(``backends.installed``): it must list what was installed after it started, and not outlive a
failed install."""

from __future__ import annotations

import sys
from pathlib import Path

from envstore.backends import pypi
from envstore.backends.installed import InstalledReader, installed_distributions


def _dist_info(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: made here\n"
        "Requires-Dist: six>=1.0\n"
    )


def test_reader_lists_what_was_installed_after_it_started(tmp_path: Path) -> None:
    python = pypi.create_venv(
        tmp_path / "env", sys.executable, log=lambda _: None, cache_dir=str(tmp_path / "cache")
    )
    [site] = (tmp_path / "env" / "lib").glob("python*/site-packages")
    with InstalledReader(python) as reader:
        _dist_info(site, "late_package", "1.2.3")  # "installed" while the reader waits
        installed = reader.read()
    late = installed["late-package"]
    assert (late.name, late.version, late.summary) == ("late_package", "1.2.3", "made here")
    assert late.dependencies == {"six": ">=1.0"}
    assert installed == installed_distributions(python)  # the same as reading afterwards


def test_reader_of_a_failed_install_is_ended(tmp_path: Path) -> None:
    python = pypi.create_venv(
        tmp_path / "env", sys.executable, log=lambda _: None, cache_dir=str(tmp_path / "cache")
    )
    try:
        with InstalledReader(python) as reader:
            raise RuntimeError("the install failed")
    except RuntimeError:
        pass
    assert reader.process.returncode is not None  # killed and reaped, not left waiting
