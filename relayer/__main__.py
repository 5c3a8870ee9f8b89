"""``python -m relayer``: run a relayer (the same as ``teebridge relayer``)."""

from __future__ import annotations

import argparse
import logging
import os
import random
import time

from relayer.accounts import KeyConfigError, load_keys
from relayer.rpc import ChainIdMismatchError, RpcUnavailableError
from relayer.service import Relayer, RelayerConfig
from relayer.store import DEFAULT_LEASE_SECONDS, StoreConfigError
from relayer.submitter import GWEI

#: The store location when --db is not given (keeps a PostgreSQL password out of the process list).
DB_ENV = "TEEBRIDGE_RELAYER_DB"
#: Seconds the relayer keeps retrying at start while no RPC URL answers, before it exits.
START_PATIENCE = 60.0


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and run until SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m relayer",
        description="Relay teebridge requests.",
        epilog="Keys come from the environment, never from arguments: TEEBRIDGE_RELAYER_KEY (one account),"
        " TEEBRIDGE_RELAYER_KEYS (several, comma-separated) or TEEBRIDGE_RELAYER_KEY_FILE (a file, one key a line);"
        " several accounts submit side by side, each with its own nonces.",
    )
    parser.add_argument(
        "--rpc-url",
        required=True,
        action="append",
        help="JSON-RPC endpoint of the chain; repeat it (or separate with commas) for failover, in priority order",
    )
    parser.add_argument("--rpc-timeout", type=float, default=10.0, help="seconds to wait for one RPC answer")
    parser.add_argument(
        "--priority-fee-gwei",
        type=float,
        default=None,
        help="maxPriorityFeePerGas of fulfilments (default: the median tip of the last 10 blocks)",
    )
    parser.add_argument(
        "--max-fee-gwei",
        type=float,
        default=500.0,
        help="fee ceiling: no transaction offers a maxFeePerGas above this (0 = no ceiling)",
    )
    parser.add_argument(
        "--replace-after",
        type=float,
        default=30.0,
        help="seconds before an unmined transaction is replaced with fees bumped by 12.5%% (0 = never)",
    )
    parser.add_argument("--router", required=True, help="Router address")
    parser.add_argument(
        "--coprocessor",
        action="append",
        default=[],
        help="coprocessor base URL, e.g. http://127.0.0.1:8000; repeat it for a pool (load balancing, failover)",
    )
    parser.add_argument(
        "--discover",
        action="store_true",
        help="also use every coprocessor whose endpoint the registry lists for a live signer, once the enclave"
        " there proves to hold that signer's key (refreshed every --discover-interval; reads logs from"
        " --start-block)",
    )
    parser.add_argument(
        "--discover-interval", type=float, default=30.0, help="seconds between two reads of the registry's endpoints"
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
        "--min-balance-wei",
        type=int,
        default=0,
        help="log a WARNING when a relayer account holds less than this (0 = off)",
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
    parser.add_argument(
        "--no-pipeline",
        action="store_true",
        help="run every stage one after the other in one loop, instead of the concurrent chain, execute and"
        " submit loops",
    )
    args = parser.parse_args(argv)
    db = args.db or os.environ.get(DB_ENV)
    if not db:
        parser.error(f"give --db (a SQLite file or a postgresql:// URL) or set {DB_ENV}")
    if not args.coprocessor and not args.discover:
        parser.error("give at least one --coprocessor URL, or --discover to find them in the registry, or both")
    if args.discover_interval <= 0:
        parser.error("--discover-interval must be positive")
    if args.lease_seconds <= 0:
        parser.error("--lease-seconds must be positive")
    if not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be between 0 and 65535")
    if args.max_fee_gwei < 0 or (args.priority_fee_gwei is not None and args.priority_fee_gwei < 0):
        parser.error("--max-fee-gwei and --priority-fee-gwei must not be negative")
    if args.rpc_timeout <= 0:
        parser.error("--rpc-timeout must be positive")
    try:
        keys = load_keys(os.environ)
    except KeyConfigError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s relayer %(levelname)s %(message)s")
    config = RelayerConfig(
        rpc_url=tuple(args.rpc_url),
        private_key=tuple(keys),
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
        rpc_timeout=args.rpc_timeout,
        priority_fee_wei=None if args.priority_fee_gwei is None else int(args.priority_fee_gwei * GWEI),
        max_fee_wei=int(args.max_fee_gwei * GWEI) or None,
        replace_after=args.replace_after,
        discover=args.discover,
        discover_interval=args.discover_interval,
        pipeline=not args.no_pipeline,
    )
    deadline = time.monotonic() + START_PATIENCE
    while True:
        try:
            relayer = Relayer(config)
            break
        except RpcUnavailableError as exc:  # a node restarting, a flaky link: try again for a while
            if time.monotonic() > deadline:
                parser.exit(2, f"relayer: {exc}\n")
            logging.getLogger("teebridge.relayer").warning("cannot start yet (%s); retrying", exc)
            time.sleep(random.uniform(1.0, 3.0))
        except (StoreConfigError, ConnectionError, ChainIdMismatchError) as exc:
            parser.exit(2, f"relayer: {exc}\n")
    relayer.run_forever()


if __name__ == "__main__":
    main()
