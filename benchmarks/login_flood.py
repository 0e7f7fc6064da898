"""Authenticated reads while 48 anonymous connections flood ``POST /login/`` (A10).

Starts ``envstore serve`` (embedded default, no workers), signs ``alice`` in with the login
cookie and reads ``GET /api/v1/environment/default/tools/`` sequentially: first alone (the
baseline), then during a flood of wrong passwords, with the login throttle out of the way (so
that every flooding request costs a full Argon2 check: the bound on password checks is what is
measured) and then with the default throttle. Goal: reads keep p99 < 100 ms.

    python benchmarks/login_flood.py [--connections 48] [--seconds 8]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.login_flood import measure, signed_in_server


def run(env: dict[str, str], connections: int, seconds: float) -> None:
    store = Path(tempfile.mkdtemp(prefix="envstore-flood-")) / "store"
    try:
        with signed_in_server(store, env) as (url, cookie):
            print("  alone:   ", measure(url, cookie, connections=0, seconds=seconds).summary())
            flooded = measure(url, cookie, connections=connections, seconds=seconds)
            print("  flooded: ", flooded.summary())
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    unthrottled = {
        "ENVSTORE_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
        "ENVSTORE_LOGIN_MAX_FAILURES_PER_USER": "1000000",
    }
    print("login flood, throttle off (every attempt checks a password):")
    run(unthrottled, args.connections, args.seconds)
    print("login flood, default throttle:")
    run({}, args.connections, args.seconds)


if __name__ == "__main__":
    main()
