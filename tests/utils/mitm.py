"""An attacker between device and server: a forwarding HTTP proxy whose tamper hooks rewrite responses.

Requests are forwarded to the real release server (so events a device posts are recorded there);
``tamper`` may replace a response for chosen paths. ``before`` may answer a request without forwarding
it (a proxy whose upstream is unavailable). When the upstream cannot be reached the proxy answers 502
Bad Gateway, as a reverse proxy in front of a stopped server does. Threaded, loopback only, stopped by
the test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Sent:
    """One request the proxy answered: what the device asked for and how many body bytes it was sent."""

    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int


@dataclass
class Upstream:
    status: int
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], Iterator[bytes]]
# (path, upstream response) -> None to pass through, or (status, headers, body iterator) to send instead
Tamper = Callable[[str, Upstream], Reply | None]
# (method, path, request headers) -> None to forward, or a reply sent without asking the upstream
Before = Callable[[str, str, dict[str, str]], Reply | None]


class Mitm:
    def __init__(self, upstream: str, tamper: Tamper, before: Before | None = None):
        self.upstream = upstream.rstrip("/")
        self.tamper = tamper
        self.before = before
        self.paths: list[str] = []
        self.sent: list[Sent] = []  # appended when a response is finished (or the device hung up)
        mitm = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # noqa: D401 - keep test output clean
                pass

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                mitm.paths.append(self.path)
                replaced = mitm.before(method, self.path, headers) if mitm.before else None
                if replaced is None:
                    try:
                        r = httpx.request(method, mitm.upstream + self.path, headers=headers, content=body, timeout=30)
                        up = Upstream(r.status_code, {k: v for k, v in r.headers.items()}, r.content)
                    except httpx.TransportError:
                        up = Upstream(502, {"Content-Type": "text/html"}, b"<h1>502 Bad Gateway</h1>")
                    replaced = mitm.tamper(self.path, up) if method == "GET" else None
                if replaced is None:
                    status, out_headers, chunks = up.status, up.headers, iter([up.body])
                    out_headers = {k: v for k, v in out_headers.items()
                                   if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection")}
                    out_headers["Content-Length"] = str(len(up.body))
                else:
                    status, out_headers, chunks = replaced
                self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in out_headers:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                written = 0
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        written += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    mitm.sent.append(Sent(method, self.path, self.headers.get("Range"), status, written))

            def do_GET(self):  # noqa: N802
                self._forward("GET")

            def do_POST(self):  # noqa: N802
                self._forward("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Mitm:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
