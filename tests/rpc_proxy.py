"""A JSON-RPC fault proxy for tests: forwards POSTs to an upstream node (anvil), and can drop, delay or refuse.

- ``drop_rate``: the fraction of requests whose *response* is lost: the request reaches the node (so a broadcast
  transaction is in its pool) and then the connection is closed without an answer.
- ``delay_rate`` / ``delay``: the fraction of requests answered only after ``delay`` seconds (a random fraction
  between half and all of it), enough to exceed a client's timeout.
- :meth:`RpcProxy.refuse` closes the listening socket (connections are refused) and :meth:`RpcProxy.accept`
  opens it again on the same port.
- ``swallow``: a predicate on the parsed JSON-RPC request; when true, the request is *not* forwarded and the
  client gets a made-up success (``eth_sendRawTransaction``: the hash a node would return), as if a node accepted
  a transaction and then lost it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from eth_utils import keccak

from teebridge.anvil import free_port


class RpcProxy:
    """An HTTP JSON-RPC proxy in front of ``upstream`` on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        upstream: str,
        *,
        drop_rate: float = 0.0,
        delay_rate: float = 0.0,
        delay: float = 0.0,
        seed: int = 0,
        swallow: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.upstream = upstream
        self.drop_rate = drop_rate
        self.delay_rate = delay_rate
        self.delay = delay
        self.swallow = swallow
        self.port = free_port()
        self.forwarded = 0
        self.dropped = 0
        self.delayed = 0
        self.swallowed = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30.0)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The proxy's URL."""
        return f"http://127.0.0.1:{self.port}"

    def _roll(self) -> float:
        with self._lock:
            return self._random.random()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if proxy._server is None:  # refusing: a kept-alive connection is cut as well
                    self.close_connection = True
                    return
                request = json.loads(body)
                if proxy.swallow is not None and isinstance(request, dict) and proxy.swallow(request):
                    proxy.swallowed += 1
                    raw = bytes.fromhex(request["params"][0].removeprefix("0x"))
                    self._reply(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x" + keccak(raw).hex()}))
                    return
                if proxy.delay and proxy._roll() < proxy.delay_rate:
                    proxy.delayed += 1
                    time.sleep(proxy.delay * (0.5 + proxy._roll() / 2))
                answer = proxy._client.post(proxy.upstream, content=body, headers={"Content-Type": "application/json"})
                proxy.forwarded += 1
                if proxy._roll() < proxy.drop_rate:
                    proxy.dropped += 1
                    self.close_connection = True  # the node did the work; the client never hears of it
                    return
                self._reply(answer.text, answer.status_code)

            def _reply(self, text: str, status: int = 200) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (a delayed answer past its timeout)
                    self.close_connection = True

        return Handler

    def accept(self) -> RpcProxy:
        """Listen (again) on the proxy's port."""
        if self._server is None:
            server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._server = server
        return self

    start = accept

    def refuse(self) -> None:
        """Close the listening socket: new connections are refused until :meth:`accept`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def stop(self) -> None:
        """Stop listening and close the upstream client."""
        self.refuse()
        self._client.close()

    def __enter__(self) -> RpcProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
