"""What the policy costs a build: the same conda build with and without a namespace policy.

One server, two namespaces, builds interleaved (``free`` has no settings; ``gov`` has an
allow-list, 50 deny rules, 5 pins and a package limit, so the submit applies the policy, the
worker merges it, the solver gets the pins as constraints and the build process checks the
solved set before installing). Each build is timed from the POST to the moment the API reports
COMPLETED, with a warm package cache. Then the evaluation alone, in process, on the same
41-package solution. Target: the policy adds under 5 % to a build.

    python benchmarks/policy_check.py [--runs 9] [--packages 40] [--files 150]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conda_build import bench_channel, envstore_build
from tests.support.server import ServerProcess

from envstore.core.policy import SolvedPackage, apply_to_spec, check_solved
from envstore.core.policy_settings import Level, merge_levels, validate_changes
from envstore.core.specs import parse_specification


def policy_for(channel: str, packages: int) -> dict[str, object]:
    return {
        "conda_allowed_channels": [channel],
        "denied_packages": [
            {"name": f"bad{n:03d}", "version": ">=1,<9", "reason": "benchmark rule"}
            for n in range(48)
        ]
        + [
            {"name": "lib00", "version": ">=7", "reason": "never matches"},
            {"name": "top", "version": "<0.1", "reason": "never matches"},
        ],  # fmt: skip
        "pinned_packages": [f"lib{n:02d} >=1" for n in range(5)],
        "max_packages": packages + 50,
    }


def evaluation_only(spec_text: str, settings: dict[str, object], packages: int) -> float:
    """Seconds per evaluation (merge + spec + solved set) of the policy, in process."""
    level = Level("gov")
    channel = str(settings["conda_allowed_channels"][0]).rstrip("/")  # type: ignore[index]
    solution = [
        SolvedPackage(f"lib{n:02d}", "1.0", "conda", f"{channel}/noarch/x.conda",
                      (f"lib{n + 1:02d}",), False)
        for n in range(packages)
    ] + [SolvedPackage("top", "1.0", "conda", f"{channel}/noarch/t.conda", ("lib00",), True)]  # fmt: skip
    spec = parse_specification(spec_text)
    stored = validate_changes(level, settings)
    rounds = 200
    started = time.perf_counter()
    for _ in range(rounds):
        policy = merge_levels([(Level(), {}), (level, stored)])
        apply_to_spec(spec, policy, channel_alias="https://conda.anaconda.org/",
                      index_url="https://pypi.org/simple")  # fmt: skip
        assert check_solved(solution, policy, channel_alias="https://conda.anaconda.org/") == []
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--packages", type=int, default=40)
    parser.add_argument("--files", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="envstore-bench-") as tmp:
        root = Path(tmp)
        channel = bench_channel(root / "channel", args.packages, args.files)
        spec = yaml.safe_dump({"channels": [channel.url], "dependencies": ["top"]})
        settings = policy_for(channel.url, args.packages)
        env = {
            "ENVSTORE_ANONYMOUS_ROLE_BINDINGS": json.dumps({"*/*": ["admin"]}),
            "ENVSTORE_BUILD_ARTIFACTS": "[]",
            "ENVSTORE_CHANNEL_ALLOW": json.dumps([f"file://{root}/"]),  # the generated channel
        }
        server = ServerProcess(root / "store", env=env).start()
        try:
            for namespace in ("free", "gov"):
                assert server.api("POST", f"/namespace/{namespace}/").status_code == 200
            answer = server.api("PUT", "/setting/gov/", json=settings)
            assert answer.status_code == 200, answer.text
            with httpx.Client(base_url=f"{server.url}/api/v1", timeout=60) as client:
                envstore_build(client, spec, "warmup")  # fills the repodata and package caches
            free: list[float] = []
            governed: list[float] = []
            for n in range(args.runs):  # alternate which goes first: no order bias
                pair = [("free", free), ("gov", governed)]
                for namespace, times in pair if n % 2 == 0 else pair[::-1]:
                    times.append(_timed(server, spec, namespace, n))
            logs = {ns: _logs(server, ns) for ns in ("free", "gov")}
        finally:
            server.stop()
        per_check = evaluation_only(spec, settings, args.packages)
    free_median, gov_median = statistics.median(free), statistics.median(governed)
    added = gov_median / free_median - 1
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"environment: {args.packages + 1} packages; policy: 50 deny rules, 5 pins, allow-list")
    print(
        f"build without policy (median of {args.runs}): {free_median:.3f}s, best {min(free):.3f}s"
    )
    print(
        f"build with policy    (median of {args.runs}): {gov_median:.3f}s, best {min(governed):.3f}s"
    )
    print(f"end to end, with the machine's noise: {added * 100:+.1f}%")
    submit = {ns: statistics.median(t for t, _s, _g in logs[ns]) for ns in logs}
    solve = {ns: statistics.median(s for _t, s, _g in logs[ns]) for ns in logs}
    gate = statistics.median(g for _t, _s, g in logs["gov"])
    print(f"submit request (server side): {submit['free'] * 1000:.1f} ms without, "
          f"{submit['gov'] * 1000:.1f} ms with the policy")  # fmt: skip
    print(f"solve (build log): {solve['free']:.3f}s without, {solve['gov']:.3f}s with the pins")
    print(f"solved-set check (build log): {gate * 1000:.2f} ms")
    cost = max(0.0, submit["gov"] - submit["free"]) + max(0.0, solve["gov"] - solve["free"]) + gate
    verdict = "ok" if cost / free_median < 0.05 else "MISSED"
    print(f"policy adds {cost * 1000:.1f} ms = {cost / free_median * 100:.2f}% of a build "
          f"(target < 5%: {verdict})")  # fmt: skip
    print(
        f"policy evaluation alone, in process (merge, spec, solved set): {per_check * 1000:.2f} ms"
    )


def _timed(server: ServerProcess, spec: str, namespace: str, n: int) -> float:
    started = time.perf_counter()
    build_id = server.submit(spec, name=f"bench-{n}", namespace=namespace)
    while True:
        build = server.api("GET", f"/build/{build_id}/", params={"wait": 30}).json()["data"]
        if build["status"] in ("COMPLETED", "FAILED", "CANCELED"):
            break
    if build["status"] != "COMPLETED":
        raise SystemExit(f"build {build_id} {build['status']}: {build['status_info']}")
    return time.perf_counter() - started


def _logs(server: ServerProcess, namespace: str) -> list[tuple[float, float, float]]:
    """Per build of ``namespace``: (submit seconds, solve seconds, policy check seconds).

    The submit is the request itself: its audit row's time minus the build's scheduling is
    not available, so it is timed as the server's answer to a fresh POST of the same spec (a
    resubmission answers the existing build after the same parsing and policy)."""
    out = []
    builds = server.api("GET", "/build/", params={"namespace": namespace}).json()["data"]
    for build in builds:
        log = server.api("GET", f"/build/{build['id']}/logs/").text
        solve = float(re.search(r"solved \d+ packages in ([0-9.]+)s", log).group(1))  # type: ignore[union-attr]
        check = re.search(r"checked in ([0-9.]+) ms", log)
        spec = yaml.safe_dump(build["specification"]["spec"])
        started = time.perf_counter()
        server.submit(spec, name=build["environment"]["name"], namespace=namespace)
        submit = time.perf_counter() - started
        out.append((submit, solve, float(check.group(1)) / 1000 if check else 0.0))
    return out


if __name__ == "__main__":
    main()
