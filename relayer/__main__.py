"""``python -m relayer``: run a relayer (the same as ``teebridge relayer``)."""

from __future__ import annotations

import argparse
import logging
import os

from relayer.service import Relayer, RelayerConfig
from relayer.store import DEFAULT_LEASE_SECONDS, StoreConfigError

#: The store location when --db is not given (keeps a PostgreSQL password out of the process list).
DB_ENV = "TEEBRIDGE_RELAYER_DB"


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m relayer", description="Relay teebridge requests.")
    parser.add_argument("--rpc-url", required=True, help="JSON-RPC endpoint of the chain")
    parser.add_argument("--router", required=True, help="Router address")
    parser.add_argument(
        "--coprocessor",
        action="append",
        required=True,
        help="coprocessor base URL, e.g. http://127.0.0.1:8000; repeat it for a pool (load balancing, failover)",
    )
    parser.add_argument(
        "--db",
        help="the relayer's state: a SQLite file (one relayer), or postgresql://user@host:port/dbname shared by"
        f" several relayers (default: ${DB_ENV})",
    )
    parser.add_argument("--start-block", type=int, default=0, help="first block to scan when the db is new")
    parser.add_argument(
        "--confirmations",
        type=int,
        default=None,
        help="blocks to wait before reading a log (default: 0 on a local chain, 31337 or 1337; 3 elsewhere)",
    )
    parser.add_argument("--reorg-window", type=int, default=128, help="recent block hashes kept to detect reorgs")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds between passes")
    parser.add_argument("--max-batch", type=int, default=32, help="most fulfilments per transaction")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve /metrics and /health on 127.0.0.1 at this port (0 = off)"
    )
    parser.add_argument(
        "--min-balance-wei", type=int, default=0, help="log a WARNING when the relayer balance is below this (0 = off)"
    )
    parser.add_argument(
        "--balance-alert-minutes", type=float, default=30.0, help="minutes between two low-balance warnings"
    )
    parser.add_argument(
        "--auto-cancel",
        action="store_true",
        help="call Router.cancel for expired requests (refunds the requester; the relayer pays the gas)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=DEFAULT_LEASE_SECONDS,
        help="how long this relayer's claims on work last unless renewed (each pass renews them); another relayer"
        " on the same PostgreSQL takes over a dead one's work after this",
    )
    args = parser.parse_args(argv)
    db = args.db or os.environ.get(DB_ENV)
    if not db:
        parser.error(f"give --db (a SQLite file or a postgresql:// URL) or set {DB_ENV}")
    if args.lease_seconds <= 0:
        parser.error("--lease-seconds must be positive")
    if not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be between 0 and 65535")
    key = os.environ.get("TEEBRIDGE_RELAYER_KEY")
    if not key:
        parser.error("set TEEBRIDGE_RELAYER_KEY to the relayer account's private key (never pass keys as arguments)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relayer %(levelname)s %(message)s")
    config = RelayerConfig(
        rpc_url=args.rpc_url,
        private_key=key,
        router=args.router,
        coprocessor_url=",".join(args.coprocessor),
        db_path=db,
        start_block=args.start_block,
        confirmations=args.confirmations,
        reorg_window=args.reorg_window,
        poll_interval=args.poll_interval,
        max_batch=args.max_batch,
        metrics_port=args.metrics_port,
        min_balance_wei=args.min_balance_wei,
        balance_alert_interval=args.balance_alert_minutes * 60,
        auto_cancel=args.auto_cancel,
        lease_seconds=args.lease_seconds,
    )
    try:
        relayer = Relayer(config)
    except (StoreConfigError, ConnectionError) as exc:
        parser.exit(2, f"relayer: {exc}\n")
    relayer.run_forever()


if __name__ == "__main__":
    main()
