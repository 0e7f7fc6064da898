"""Seed a store for the API read benchmark like conda-store's 20 x 10: 200 environments with one
completed build each (20 packages), and an administrator's API token, written to STORE/token.

Run it from the root of the checkout whose server is measured, with that checkout's Python, so
that the store has its schema (the starting commit in a ``git worktree`` seeds its own store):

    cd WORKTREE && .venv/bin/python /path/to/benchmarks/seed_reads.py STORE
    ENVSTORE_STORE_DIR=STORE .venv/bin/envstore serve --port PORT
    python api_bench.py --target NAME http://127.0.0.1:PORT/ "$(cat STORE/token)" ...

It uses ``populate`` and ``make_token`` of the checkout's own ``benchmarks/api_reads.py``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path, help="the store directory to create and seed")
    store = parser.parse_args().store
    sys.path[:0] = [str(Path.cwd()), str(Path.cwd() / "benchmarks")]
    api_reads = importlib.import_module("api_reads")  # the checkout's own, not this one's
    api_reads.populate(store, 20, 10, 1)
    token = api_reads.make_token(store)
    (store / "token").write_text(token)
    print(token)


if __name__ == "__main__":
    main()
