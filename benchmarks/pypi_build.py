"""PyPI build: envstore (submit → COMPLETED) against raw ``uv venv`` + ``uv pip install``.

Both use the same warm uv cache. envstore's time is measured from the POST to the moment the
API reports COMPLETED, so it includes the queue, the child process, the lockfile, the database
writes and the publish. Target: envstore <= 1.3x raw uv.

    python benchmarks/pypi_build.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.server import ServerProcess

REQUIREMENTS = ["six==1.16.0", "iniconfig==2.0.0", "attrs==23.2.0", "packaging==24.0"]
UV = str(Path(sys.executable).parent / "uv")


def raw_uv(root: Path, cache: Path, n: int) -> float:
    prefix = root / f"raw-{n}"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    subprocess.run([UV, "venv", "-q", "--python", "3.11", str(prefix)], check=True, env=env)
    subprocess.run(
        [
            UV,
            "pip",
            "install",
            "-q",
            "--python",
            str(prefix / "bin" / "python"),
            "--link-mode",
            "hardlink",
            *REQUIREMENTS,
        ],
        check=True,
        env=env,
    )
    return time.perf_counter() - started


def envstore_build(server: ServerProcess, n: int) -> tuple[float, float]:
    """(client-side submit → COMPLETED seen, server-side scheduled_on → ended_on)."""
    started = time.perf_counter()
    build_id = server.submit("\n".join(REQUIREMENTS) + "\n", name=f"bench-{n}")
    while True:  # followed with the long poll the CLI uses: answered when the build ends
        response = server.api("GET", f"/build/{build_id}/", params={"wait": 30})
        build = response.json()["data"]
        if build["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            break
    elapsed = time.perf_counter() - started
    assert build["status"] == "COMPLETED", server.api("GET", f"/build/{build_id}/logs/").text
    server_side = datetime.fromisoformat(build["ended_on"]) - datetime.fromisoformat(
        build["scheduled_on"]
    )
    return elapsed, server_side.total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--no-archives",
        action="store_true",
        help="build only LOCKFILE/YAML/LOGS (no tarball or image)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="envstore-bench-"))
    try:
        env = {"ENVSTORE_WORKERS": "1"}
        if args.no_archives:
            env["ENVSTORE_BUILD_ARTIFACTS"] = '["LOCKFILE", "YAML", "LOGS"]'
        server = ServerProcess(root / "store", env=env).start()
        cache = root / "store" / "cache" / "uv"
        try:
            envstore_build(server, -1)  # warm the shared cache (and the server)
            raw_uv(root, cache, -1)
            ours, raw = [], []
            for n in range(args.runs):  # interleaved, so network weather hits both alike
                ours.append(envstore_build(server, n))
                raw.append(raw_uv(root, cache, n))
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    client = [c for c, _ in ours]
    server_side = [s for _, s in ours]
    raw_median = statistics.median(raw)
    artifacts = (
        "lockfile, yaml, logs" if args.no_archives else "all artifacts incl. tarball and image"
    )
    print(
        f"packages: {' '.join(REQUIREMENTS)} ({args.runs} runs, warm cache, medians; {artifacts})"
    )
    print(f"raw uv venv + uv pip install      : {raw_median:.3f} s  ({_runs(raw)})")
    print(
        f"envstore submit -> COMPLETED seen : {statistics.median(client):.3f} s  ({_runs(client)})"
    )
    print(
        f"envstore scheduled -> ended       : {statistics.median(server_side):.3f} s  ({_runs(server_side)})"
    )
    print(
        f"ratio envstore / raw uv           : {statistics.median(client) / raw_median:.2f}x "
        f"(server side {statistics.median(server_side) / raw_median:.2f}x; target <= 1.3x)"
    )


def _runs(times: list[float]) -> str:
    return "runs " + ", ".join(f"{t:.3f}" for t in times)


if __name__ == "__main__":
    main()
