"""A tiny HTTP server for operators: ``GET /metrics`` (Prometheus text) and ``GET /health`` (JSON).

It also forwards job owners' secret set uploads and deletions (``POST /v1/secrets``,
``POST /v1/secrets/delete``) to the coprocessor, byte for byte: the relayer cannot read them (they are
encrypted to the enclave and signed by the owner) and cannot alter them without the enclave refusing.

It runs the stdlib :class:`http.server.ThreadingHTTPServer` in a daemon thread, bound to 127.0.0.1 only
(put a reverse proxy in front of it to expose it). It never touches the chain or the database itself: it
serves what the two callables return, and the relayer builds both from state its loop already collected.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from relayer.metrics import CONTENT_TYPE

log = logging.getLogger("teebridge.relayer.health")

HOST = "127.0.0.1"
FORWARDED_PATHS = ("/v1/secrets", "/v1/secrets/delete")
MAX_FORWARD_BYTES = 65536


class HealthServer:
    """Serves ``/metrics`` and ``/health`` on ``127.0.0.1:port`` until :meth:`stop`.

    ``/health`` answers 200 when the report's ``status`` is ``"ok"`` and 503 otherwise, so a load balancer
    or a container health check can use it as is. ``port=0`` picks a free port (see :attr:`port`).
    """

    def __init__(
        self,
        port: int,
        metrics: Callable[[], str],
        health: Callable[[], dict[str, Any]],
        forward: Callable[[str, bytes], tuple[int, bytes]] | None = None,
    ) -> None:
        self._metrics = metrics
        self._health = health
        self._forward = forward
        self._server = ThreadingHTTPServer((HOST, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> HealthServer:
        """Serve in a daemon thread; return self."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="relayer-health", daemon=True)
        self._thread.start()
        log.info("metrics and health on %s/metrics and %s/health", self.url, self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/metrics":
                        self._reply(200, CONTENT_TYPE, server._metrics().encode())
                    elif path == "/health":
                        report = server._health()
                        code = 200 if report.get("status") == "ok" else 503
                        self._reply(code, "application/json", json.dumps(report, sort_keys=True).encode())
                    else:
                        self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n")
                except Exception as exc:  # a broken provider must not kill the server thread
                    log.warning("health server: %s failed: %s", path, exc)
                    self._reply(500, "text/plain; charset=utf-8", f"error: {exc}\n".encode())

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                if path not in FORWARDED_PATHS or server._forward is None:
                    self._reply(
                        404, "text/plain; charset=utf-8", b"not found: POST /v1/secrets or /v1/secrets/delete\n"
                    )
                    return
                length = self.headers.get("Content-Length", "")
                if not length.isdigit() or int(length) > MAX_FORWARD_BYTES:
                    self._reply(413, "application/json", b'{"error": "send a JSON body of at most 65536 bytes"}')
                    return
                code, body = server._forward(path, self.rfile.read(int(length)))
                self._reply(code, "application/json", body)

            def _reply(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health server: " + format, *args)

        return Handler
