"""A small PyPI-style simple index on loopback, serving wheels generated on the fly.

Resilience tests need builds that are real (uv resolves and installs for real) but slow on
demand, offline and deterministic: every wheel download waits ``delay`` seconds first. Any
project name is served; each gets versions 1.0 and 2.0 of a pure-Python wheel with one module.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSIONS = ("1.0", "2.0")


BIG_PAYLOAD = 24 * 1024 * 1024


def make_wheel(name: str, version: str) -> tuple[str, bytes]:
    """A minimal valid pure-Python wheel: (filename, bytes). Projects named ``big-*`` carry
    an incompressible 24 MiB data file, to fill a disk."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: envstore-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if name.startswith("big-"):
        files[f"{dist}/payload.bin"] = random.Random(name).randbytes(BIG_PAYLOAD)
    record = "".join(
        f"{path},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}\n"
        for path, data in files.items()
    )
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            info_entry = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(info_entry, data)
    return f"{dist}-{version}-py3-none-any.whl", buffer.getvalue()


def _b64(digest: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class LocalIndex:
    def __init__(self) -> None:
        self.delay = 0.0
        self.stop = threading.Event()
        self.downloads: list[str] = []
        self._wheels: dict[str, bytes] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def _wheel(self, filename: str) -> bytes | None:
        if filename not in self._wheels:
            name, version = filename.split("-")[:2]
            if version not in VERSIONS:
                return None
            self._wheels[filename] = make_wheel(name.replace("_", "-"), version)[1]
        return self._wheels[filename]

    def _project_page(self, project: str) -> bytes:
        links = []
        for version in VERSIONS:
            filename = f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
            data = self._wheels.get(filename) or make_wheel(project, version)[1]
            self._wheels[filename] = data
            digest = hashlib.sha256(data).hexdigest()
            links.append(f'<a href="/files/{filename}#sha256={digest}">{filename}</a>')
        return ("<html><body>" + "".join(links) + "</body></html>").encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/simple/"):
                    body = index._project_page(self.path.split("/")[2].lower())
                    self._send(200, body, "text/html")
                elif self.path.startswith("/files/"):
                    index.downloads.append(self.path)
                    deadline = time.monotonic() + index.delay
                    while time.monotonic() < deadline and not index.stop.is_set():
                        time.sleep(0.05)
                    data = index._wheel(self.path.rsplit("/", 1)[1])
                    self._send(200 if data else 404, data or b"", "application/octet-stream")
                else:
                    self._send(404, b"", "text/plain")

            def do_HEAD(self) -> None:
                # No range support: uv then downloads whole wheels, which is what gets delayed.
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)  # a client that gave up (a full disk, a cancel)

        return Handler


@contextmanager
def local_index() -> Iterator[LocalIndex]:
    index = LocalIndex()
    thread = threading.Thread(target=index.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        index.stop.set()
        index.server.shutdown()
        index.server.server_close()
