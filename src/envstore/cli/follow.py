"""Following a build to its end: a live status line and the log as it grows.

Used by ``env create --wait``, ``build rebuild --wait`` and ``build logs --follow``. It long-polls:
``GET /build/{id}/logs/?offset=N&wait=S`` answers as soon as the log grows (or the build ends)
and ``GET /build/{id}/?wait=S`` as soon as the status changes, so lines appear as the build
writes them and the command returns the moment the build ends. Against a server that answers
at once (no long polls), it falls back to one round every ``POLL_INTERVAL``. The log goes to
stdout, the status spinner to stderr.
"""

from __future__ import annotations

import codecs
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from envstore.cli.client import EnvstoreClient
from envstore.cli.output import err_console, one_line, status_line
from envstore.core.builds import TERMINAL, BuildStatus
from envstore.errors import NotFound

__all__ = [
    "EXIT_INTERRUPTED",
    "POLL_INTERVAL",
    "LogStream",
    "exit_code_for",
    "follow_build",
    "stopped_following",
]

EXIT_INTERRUPTED = 130  # the shell's code for SIGINT; the build itself is not touched
POLL_INTERVAL = 0.5  # the least time between two rounds that bring nothing new
WAIT = 10.0  # seconds one long poll may last


class LogStream:
    """Reads a build log from a byte offset and writes whole characters to ``write``.

    The offset counts bytes, so a chunk can end inside a multi-byte UTF-8 character; the
    incremental decoder holds such a tail back until the rest arrives.
    """

    def __init__(self, write: Callable[[str], object], offset: int = 0) -> None:
        self.offset = offset
        self._write = write
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.at_line_start = True

    def feed(self, data: bytes, next_offset: int) -> None:
        """Write the decodable part of ``data`` and remember where to read next."""
        self._emit(self._decoder.decode(data))
        self.offset = next_offset

    def pull(self, client: EnvstoreClient, build_id: int, wait: float = 0) -> bool:
        """Fetch and write whatever the log gained since the last call (waiting up to
        ``wait`` seconds for something to come); True if something came.

        A build that has not started has no log yet; the server may answer 404 for it, which
        is not an error while following.
        """
        try:
            chunk = client.build_logs(build_id, self.offset, wait=wait)
        except NotFound:
            return False
        self.feed(chunk.data, chunk.next_offset)
        return bool(chunk.data)

    def finish(self) -> None:
        """Flush a dangling partial character at the end of the log."""
        self._emit(self._decoder.decode(b"", final=True))
        if not self.at_line_start:
            self._emit("\n")

    def _emit(self, text: str) -> None:
        if text:
            self._write(text)
            self.at_line_start = text.endswith("\n")


def exit_code_for(build: dict[str, Any]) -> int:
    """0 when the build completed, 1 when it failed or was canceled."""
    return 0 if build.get("status") == BuildStatus.COMPLETED else 1


def _stdout_write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _is_terminal(build: dict[str, Any]) -> bool:
    return str(build.get("status")) in {status.value for status in TERMINAL}


def stopped_following(build_id: int) -> int:
    """Ctrl-C stops the following, not the build: say so and how to go on; return 130."""
    sys.stderr.write(
        f"\nstopped following build {build_id}; it goes on on the server. "
        f"Follow it again: envstore build logs {build_id} --follow; "
        f"cancel it: envstore build cancel {build_id}\n"
    )
    sys.stderr.flush()
    return EXIT_INTERRUPTED


def _follow(
    client: EnvstoreClient, build_id: int, stream: LogStream, show_log: bool
) -> dict[str, Any]:
    """Long-poll until the build ends, writing its log to ``stream``; return the last build."""
    build = client.get_build(build_id)
    spinner = err_console().status(f"build {build_id}: {build.get('status')}")
    # The spinner's refresh thread must not take Ctrl-C: a SIGINT delivered to it leaves the
    # main thread blocked in its long poll (up to WAIT s) before KeyboardInterrupt is raised.
    # A thread inherits the signal mask of the thread that starts it.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        spinner.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    with spinner:
        while not _is_terminal(build):
            started, status = time.monotonic(), build.get("status")
            news = stream.pull(client, build_id, wait=WAIT) if show_log else False
            build = client.get_build(build_id, wait=0 if show_log else WAIT)
            spinner.update(f"build {build_id}: {build.get('status')}")
            idle = not news and build.get("status") == status
            if idle and not _is_terminal(build):  # an answer at once with nothing new
                time.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - started)))
        if show_log:
            stream.pull(client, build_id)  # the lines written before the build ended
    return build


def follow_build(client: EnvstoreClient, build_id: int, *, show_log: bool = True) -> int:
    """Poll until the build ends, streaming its log; print the final line; return the exit code.

    The final log read happens after the terminal state is seen, so the last lines written by
    the worker before it finished are never lost.
    """
    stream = LogStream(_stdout_write)
    try:
        build = _follow(client, build_id, stream, show_log)
    except KeyboardInterrupt:
        stream.finish()
        return stopped_following(build_id)
    stream.finish()
    code = exit_code_for(build)
    line = status_line(build)
    if code == 0:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    else:
        sys.stderr.write(one_line(line) + "\n")
        sys.stderr.flush()
    return code
