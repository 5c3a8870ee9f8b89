"""Run the coprocessor's HTTP API: ``python -m coprocessor [--data-dir D] [--host H] [--port P]``.

Settings not given as arguments come from ``TEEBRIDGE_COPROCESSOR_*`` variables (``coprocessor.config``).
Once the socket is bound and the server accepts connections, one line is printed to stdout::

    teebridge-coprocessor listening on http://HOST:PORT

(with the real port when ``--port 0`` asked the OS to pick one), so a launcher can wait for it and parse
it. Logs go to stderr. SIGTERM and SIGINT shut the server down gracefully and exit with status 0.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from coprocessor.app import CoprocessorService, create_app
from coprocessor.attestation import AttestationUnavailableError
from coprocessor.config import CoprocessorConfig
from coprocessor.sealing import SealingError

log = logging.getLogger("coprocessor")

LISTENING_PREFIX = "teebridge-coprocessor listening on "
#: The environment variable --log-level overrides.
LOG_LEVEL_ENV = "TEEBRIDGE_COPROCESSOR_LOG_LEVEL"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; each overrides its environment variable."""
    parser = argparse.ArgumentParser(prog="python -m coprocessor", description="Run the teebridge coprocessor.")
    parser.add_argument("--data-dir", type=Path, help="directory of the sealed keys (TEEBRIDGE_COPROCESSOR_DATA_DIR)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port; 0 picks a free one (default 0)")
    parser.add_argument("--attestation", help="quote provider name (default simulated)")
    parser.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        default=os.environ.get(LOG_LEVEL_ENV, "INFO").upper(),
        help=f"INFO logs one line per executed batch, DEBUG one per request too ({LOG_LEVEL_ENV}; default INFO)",
    )
    return parser.parse_args(argv)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 if ``host`` contains ':')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    # Accepted connections inherit this. asyncio sets it only on sockets it made itself (proto IPPROTO_TCP), not
    # on this one: without it a response written in two parts waits for the client's delayed ACK, 40 ms on
    # Linux, so every call on a kept-alive connection took 44 ms whatever its size.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that prints the listening line once it is really serving."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(LISTENING_PREFIX + self.url, flush=True)


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Installed before uvicorn, which restores and re-raises it after a graceful shutdown.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Start the server and block until it is shut down."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        config = CoprocessorConfig.from_env(
            data_dir=args.data_dir, host=args.host, port=args.port, attestation=args.attestation
        )
        app = create_app(config)
        sock = bind(config.host, config.port)
    except (ValueError, OSError, SealingError, AttestationUnavailableError) as exc:
        log.error("cannot start the coprocessor: %s", exc)
        return 1
    if config.egress_allow:
        log.warning(
            "outgoing HTTP may also reach these non-public networks (egress_allow): %s; "
            "jobs can read whatever listens there and get it signed",
            ", ".join(config.egress_allow),
        )
    service: CoprocessorService = app.state.coprocessor
    server_config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(config.job_timeout_seconds) + 5,
    )
    try:
        _Server(server_config, url_of(sock)).run(sockets=[sock])
    finally:
        sock.close()
        stuck = service.executor.stuck_handlers
        if stuck:
            # Worker threads cannot be killed and the interpreter would wait for them at exit.
            log.warning("exiting with %d job handlers still running past their budget", stuck)
            logging.shutdown()
            sys.stdout.flush()
            os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
