"""PyPI build: envstore (submit → COMPLETED) against raw uv doing the same work.

Both use the same warm uv cache. envstore's time is measured from the POST to the moment the
API reports COMPLETED, so it includes the queue, the child process, the lockfile, the database
writes and the publish. Raw uv is ``uv pip compile --generate-hashes`` + ``uv venv`` +
``uv pip sync --require-hashes`` (what envstore runs). Target: envstore <= 1.3x raw uv (four
small packages), <= 1.1x for the data-science environment (``--data-science``: numpy, pandas,
scikit-learn, matplotlib; 352 MB, downloads ~100 MB from PyPI once).

The archive and the image are made after COMPLETED (pack jobs): the time from the POST until
both are ready is printed too, next to ``tar | zstd -T0 -3`` of the same prefix timed in the
same run (target: ready <= raw uv + 2x that). Ready means both routes answered 200: the
archive's blob verified and its bytes on their way; the time until the client has read the
~100 MB archive too is printed after it.

    python benchmarks/pypi_build.py [--runs 5] [--data-science] [--no-archives]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.server import ServerProcess

SMALL = ["six==1.16.0", "iniconfig==2.0.0", "attrs==23.2.0", "packaging==24.0"]
DATA_SCIENCE = ["numpy==2.1.3", "pandas==2.2.3", "scikit-learn==1.5.2", "matplotlib==3.9.2"]
UV = str(Path(sys.executable).parent / "uv")


def raw_uv(root: Path, cache: Path, n: int, requirements: list[str]) -> float:
    prefix = root / f"raw-{n}"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_CACHE_DIR": str(cache)}
    (root / "requirements.in").write_text("\n".join(requirements) + "\n")
    lock = root / f"raw-{n}.txt"
    started = time.perf_counter()
    compile_ = [UV, "pip", "compile", "-q", "--generate-hashes", "--python-version", "3.11"]
    subprocess.run([*compile_, str(root / "requirements.in"), "-o", str(lock)], check=True, env=env)
    subprocess.run([UV, "venv", "-q", "--python", "3.11", str(prefix)], check=True, env=env)
    python = str(prefix / "bin" / "python")
    sync = [UV, "pip", "sync", "-q", "--require-hashes", "--link-mode", "hardlink"]
    subprocess.run([*sync, "--python", python, str(lock)], check=True, env=env)
    elapsed = time.perf_counter() - started
    shutil.rmtree(prefix, ignore_errors=True)
    return elapsed


def tar_zstd(prefix: str) -> float:
    """``tar -C PREFIX -c . | zstd -T0 -3`` into /dev/null: the reference for packing."""
    started = time.perf_counter()
    subprocess.run(
        f"tar -C {shlex.quote(prefix)} -cf - . | zstd -q -T0 -3 -c > /dev/null",
        shell=True,
        check=True,
    )
    return time.perf_counter() - started


Timing = tuple[float, float, float | None, float | None, str]


def envstore_build(
    server: ServerProcess, n: int, requirements: list[str], archives: bool
) -> Timing:
    """(submit → COMPLETED seen, server-side scheduled_on → ended_on, submit → archive and
    image ready (both answered 200), submit → the archive's bytes downloaded too, the
    prefix)."""
    # A variable of its own per run: the same packages, but not the same pack key, so each
    # run packs its archive and image rather than reusing the first run's blobs.
    pins = "".join(f"      - {r}\n" for r in requirements)
    spec = (
        f"name: bench-{n}\ndependencies:\n  - python=3.11\n  - pip:\n{pins}"
        f"variables:\n  BENCH_RUN: '{n}'\n"
    )
    started = time.perf_counter()
    build_id = server.submit(spec, name=f"bench-{n}")
    while True:  # followed with the long poll the CLI uses: answered when the build ends
        response = server.api("GET", f"/build/{build_id}/", params={"wait": 30})
        build = response.json()["data"]
        if build["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            break
    elapsed = time.perf_counter() - started
    assert build["status"] == "COMPLETED", server.api("GET", f"/build/{build_id}/logs/").text
    ready = downloaded = None
    if archives:  # the archive route waits for the pack job, as clients downloading it do
        ready, downloaded = _artifacts_ready(server, build_id, started)
    server_side = datetime.fromisoformat(build["ended_on"]) - datetime.fromisoformat(
        build["scheduled_on"]
    )
    return elapsed, server_side.total_seconds(), ready, downloaded, str(build["prefix"])


def _artifacts_ready(server: ServerProcess, build_id: int, started: float) -> tuple[float, float]:
    """Ready: the archive route has answered 200 (its blob verified, the first bytes on their
    way) and so has the image's; downloaded: the archive's ~100 MB read by the client too."""
    url = f"{server.url}/api/v1/build/{build_id}"
    with (
        httpx.Client(timeout=300) as client,
        client.stream("GET", f"{url}/archive/", params={"wait": 300}) as archive,
    ):
        assert archive.status_code == 200, archive.read()[:300]
        answer = client.get(f"{url}/docker/", params={"wait": 300})
        assert answer.status_code == 200, answer.text[:300]
        ready = time.perf_counter() - started
        for _ in archive.iter_raw(1 << 20):
            pass
    return ready, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--no-archives",
        action="store_true",
        help="build only LOCKFILE/YAML/LOGS (no tarball or image)",
    )
    parser.add_argument(
        "--data-science",
        action="store_true",
        help="numpy, pandas, scikit-learn, matplotlib instead of four small packages",
    )
    args = parser.parse_args()
    requirements = DATA_SCIENCE if args.data_science else SMALL
    root = Path(tempfile.mkdtemp(prefix="envstore-bench-"))
    try:
        env = {"ENVSTORE_WORKERS": "2"}
        if args.no_archives:
            env["ENVSTORE_BUILD_ARTIFACTS"] = '["LOCKFILE", "YAML", "LOGS"]'
        server = ServerProcess(root / "store", env=env).start()
        cache = root / "store" / "cache" / "uv"
        try:
            # warm the shared cache and the server; a second variant of the spec each run
            # (a new environment name) keeps envstore from answering with the same build
            envstore_build(server, -1, requirements, not args.no_archives)
            raw_uv(root, cache, -1, requirements)
            ours, raw, zstd = [], [], []
            for n in range(args.runs):  # interleaved, so network weather hits both alike
                ours.append(envstore_build(server, n, requirements, not args.no_archives))
                raw.append(raw_uv(root, cache, n, requirements))
                zstd.append(tar_zstd(ours[-1][4]))
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(args, requirements, ours, raw, zstd)


def _report(
    args: argparse.Namespace,
    requirements: list[str],
    ours: list[Timing],
    raw: list[float],
    zstd: list[float],
) -> None:
    client = [c for c, _, _, _, _ in ours]
    server_side = [s for _, s, _, _, _ in ours]
    raw_median = statistics.median(raw)
    artifacts = "lockfile, yaml, logs" if args.no_archives else "all artifacts"
    print(
        f"packages: {' '.join(requirements)} ({args.runs} runs, warm cache, medians; {artifacts})"
    )
    print(f"raw uv compile + venv + sync      : {raw_median:.3f} s  ({_runs(raw)})")
    print(
        f"envstore submit -> COMPLETED seen : {statistics.median(client):.3f} s  ({_runs(client)})"
    )
    print(
        f"envstore scheduled -> ended       : {statistics.median(server_side):.3f} s  ({_runs(server_side)})"
    )
    target = "1.1x" if args.data_science else "1.3x"
    print(
        f"ratio envstore / raw uv           : {statistics.median(client) / raw_median:.2f}x "
        f"(server side {statistics.median(server_side) / raw_median:.2f}x; target <= {target})"
    )
    ready = [r for _, _, r, _, _ in ours if r is not None]
    downloaded = [d for _, _, _, d, _ in ours if d is not None]
    if ready:
        budget = raw_median + 2 * statistics.median(zstd)
        print(
            f"tar | zstd -T0 -3 of the prefix   : {statistics.median(zstd):.3f} s  ({_runs(zstd)})"
        )
        print(
            f"envstore submit -> archive+image  : {statistics.median(ready):.3f} s  ({_runs(ready)}); "
            f"target <= raw uv + 2x tar|zstd = {budget:.3f} s"
        )
        print(
            f"  ... and the archive downloaded  : {statistics.median(downloaded):.3f} s  "
            f"({_runs(downloaded)})"
        )


def _runs(times: list[float]) -> str:
    return "runs " + ", ".join(f"{t:.3f}" for t in times)


if __name__ == "__main__":
    main()
