"""The ``teebridge`` command line: thin wiring over the coprocessor, relayer, verifier and contracts."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from teebridge.gatekeeper_service import GatekeeperService

STATE_DIR = Path(".teebridge")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``teebridge`` command."""
    parser = argparse.ArgumentParser(prog="teebridge", description="TEE coprocessor and oracle bridge for EVM chains.")
    sub = parser.add_subparsers(dest="command", required=True)

    contracts = sub.add_parser("contracts", help="Solidity build")
    contracts_sub = contracts.add_subparsers(dest="action", required=True)
    contracts_sub.add_parser("build", help="compile with the pinned solc and write contracts/artifacts")

    sub.add_parser("demo", help="start a local stack, run one confidential request, stop everything")

    up = sub.add_parser("up", help="start the local stack and keep it running until Ctrl-C")
    up.add_argument("--port", type=int, default=8545, help="anvil's RPC port (default 8545; 0 picks one)")
    up.add_argument("--workdir", type=Path, default=STATE_DIR, help="where logs, keys and state go")
    up.add_argument("--record", type=Path, default=None, help="deployment record (default deployments/localhost.json)")

    req = sub.add_parser("request", help="send a request to a running stack and wait for the answer")
    req.add_argument("job", help="job as name@version, e.g. confidential.credit-score@1")
    req.add_argument("values", nargs="*", help="input values, each parsed as JSON (strings may be bare)")
    req.add_argument("--types", help="comma-separated ABI input types (default: the job's, from the coprocessor)")
    req.add_argument("--plain", action="store_true", help="send the input unencrypted (default: HPKE-encrypted)")
    req.add_argument("--gas", type=int, default=300_000, help="callback gas limit")
    req.add_argument("--fee", type=int, default=0, help="fee in wei paid to the relayer that delivers")
    req.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the answer")
    req.add_argument("--state", type=Path, default=STATE_DIR / "stack.json", help="state file written by `up`")

    feeds = sub.add_parser("feeds", help="push price feeds: list, show, add")
    feeds_sub = feeds.add_subparsers(dest="action", required=True)
    for action, text in (("list", "every feed with its latest answer and age"), ("show", "one feed's recent rounds")):
        p = feeds_sub.add_parser(action, help=text)
        if action == "show":
            p.add_argument("pair", help="e.g. ETH/USD")
            p.add_argument("--rounds", type=int, default=5, help="how many recent rounds")
        p.add_argument("--state", type=Path, default=STATE_DIR / "stack.json", help="state file written by `up`")
    change = feeds_sub.add_parser("set", help="change a feed's push policy; a running pusher picks it up")
    change.add_argument("pair", help="e.g. ETH/USD")
    change.add_argument("--deviation-bps", type=int, required=True, help="push on moves of at least this (1 = 0.01 %%)")
    change.add_argument("--deployment", type=Path, required=True, help="the record the pusher follows")
    add = feeds_sub.add_parser("add", help="deploy a new feed (owner key in TEEBRIDGE_DEPLOYER_KEY)")
    add.add_argument("pair", help="e.g. SOL/USD")
    add.add_argument("--decimals", type=int, default=8)
    add.add_argument("--min-sources", type=int, default=3)
    add.add_argument("--heartbeat", type=int, default=3600, help="seconds before the answer counts as stale")
    add.add_argument("--rpc-url", required=True)
    add.add_argument("--deployment", type=Path, required=True, help="deployments/<network>.json (updated)")

    status = sub.add_parser("status", help="show the running stack's pipeline")
    status.add_argument("--state", type=Path, default=STATE_DIR / "stack.json")

    sub.add_parser("coprocessor", help="run a coprocessor (arguments as for `python -m coprocessor`)", add_help=False)
    sub.add_parser("relayer", help="run a relayer (arguments as for `python -m relayer`)", add_help=False)

    gk = sub.add_parser("gatekeeper", help="verify coprocessors' attestations; register, renew and revoke signers")
    gk_sub = gk.add_subparsers(dest="action", required=True)
    keys = sub.add_parser("keys", help="enclave keys: show them, or rotate them (gatekeeper key needed)")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    show = keys_sub.add_parser("show", help="a coprocessor's current, pending and retired public keys")
    show.add_argument("--coprocessor", required=True, help="coprocessor base URL")
    gatekeeper_actions = (
        (gk_sub, "register", "check each coprocessor once"),
        (gk_sub, "run", "check them on a schedule"),
        (
            keys_sub,
            "rotate",
            "fresh enclave keys, verified and registered; old HPKE keys kept until the old expiry; a coprocessor "
            "with an admin token wants it in TEEBRIDGE_COPROCESSOR_ADMIN_TOKEN",
        ),
    )
    for parent, action, text in gatekeeper_actions:
        p = parent.add_parser(action, help=f"{text}; key in TEEBRIDGE_GATEKEEPER_KEY")
        p.add_argument("--rpc-url", required=True)
        p.add_argument("--deployment", type=Path, required=True, help="deployments/<network>.json")
        p.add_argument("--coprocessor", action="append", required=True, help="coprocessor base URL; repeatable")
        p.add_argument(
            "--public-url",
            action="append",
            default=[],
            help="the URL relayers should use for the --coprocessor in the same position, recorded in the registry"
            " with its signer (for `relayer --discover`); give one per --coprocessor, or none",
        )
        p.add_argument("--measurement", action="append", default=[], help="allowed measurement (hex); repeatable")
        p.add_argument("--allow-simulated", action="store_true", help="accept simulated attestation (31337 only)")
        p.add_argument("--policy", type=Path, help="attestation policy (TOML/JSON) for TDX/SGX enclaves")
        source = p.add_mutually_exclusive_group()
        source.add_argument("--collateral", type=Path, help="DCAP collateral JSON (QuoteCollateralV3)")
        source.add_argument("--pccs-url", help="PCCS base URL to fetch collateral from")
        p.add_argument("--validity", type=int, default=7 * 24 * 3600, help="seconds a registration lasts")
        p.add_argument("--renew-margin", type=int, default=24 * 3600, help="renew when this close to expiry")
        p.add_argument("--interval", type=float, default=300.0, help="seconds between checks (run)")

    deploy = sub.add_parser("deploy", help="deploy the contracts; deployer key in TEEBRIDGE_DEPLOYER_KEY")
    deploy.add_argument("--rpc-url", required=True)
    deploy.add_argument("--network", required=True, help="name of the record under deployments/")
    deploy.add_argument("--gatekeeper", required=True, help="address allowed to register signers")
    deploy.add_argument("--allow-simulated", action="store_true", help="enable simulated attestation (31337 only)")

    from teebridge import attest, models

    attest.add_arguments(sub)
    models.add_arguments(sub)

    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] in ("coprocessor", "relayer"):
        return _passthrough(argv[0], argv[1:])
    args = parser.parse_args(argv)
    handler = {
        "contracts": _contracts,
        "demo": _demo,
        "up": _up,
        "request": _request,
        "status": _status,
        "gatekeeper": _gatekeeper,
        "keys": _keys,
        "deploy": _deploy,
        "attest": attest.run,
        "models": models.run,
        "feeds": _feeds,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError, TimeoutError, FileNotFoundError) as exc:
        print(f"teebridge: {exc}", file=sys.stderr)
        return 1


def _passthrough(name: str, rest: list[str]) -> int:
    if name == "coprocessor":
        from coprocessor.__main__ import main as coprocessor_main

        return coprocessor_main(rest) or 0
    from relayer.__main__ import main as relayer_main

    relayer_main(rest)
    return 0


def _contracts(_args: argparse.Namespace) -> int:
    from contracts.build import compile_all, write_artifacts

    artifacts, compiler = compile_all()
    for path in write_artifacts(artifacts):
        print(f"wrote {path}")
    print(f"compiled with {compiler}")
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from teebridge.demo import run_demo

    print("teebridge demo: a confidential credit-score request on a local stack")
    run_demo()
    return 0


def _up(args: argparse.Namespace) -> int:
    from eth_account import Account

    from teebridge.anvil import DEV_KEYS
    from teebridge.deploy import DEPLOYMENTS_DIR
    from teebridge.stack import LocalStack

    stack = LocalStack(
        workdir=args.workdir.resolve(),
        anvil_port=args.port,
        write_deployment=args.record or DEPLOYMENTS_DIR / "localhost.json",
        progress=lambda m: print(f"  - {m}"),
        with_feeds=True,
        price_walk_seconds=5.0,
    )
    with stack:
        d = stack.deployment
        print(f"\nRPC URL          {stack.anvil.rpc_url}   (chain id {d.chain_id})")
        print(f"EnclaveRegistry  {d.registry}")
        print(f"Router           {d.router}")
        print(f"ExampleConsumer  {d.consumer}")
        print(f"coprocessor      {stack.coprocessor_url}   signer {stack.registration.signer} (SIMULATED attestation)")
        for pair, address in d.feeds.items():
            print(f"PriceFeed        {address}   {pair} (AggregatorV3Interface; prices replayed and moving)")
        print(f"logs             {stack.coprocessor.log_path}, {stack.workdir}/relayer.log, {stack.workdir}/feeder.log")
        print("\nFunded test accounts (anvil's public development keys: never use them on a real network):")
        roles = ["owner", "gatekeeper", "relayer", "user", "spare", "spare"]
        for role, key in zip(roles, DEV_KEYS, strict=True):
            print(f"  {role:<10} {Account.from_key(key).address}  {key}")
        print("\nTry:  teebridge request confidential.credit-score@1 85000 22000 1 52")
        print("      teebridge feeds list")
        print("Ctrl-C stops everything.")
        try:
            while stack.coprocessor.alive() and stack.relayer is not None and stack.relayer.alive():
                time.sleep(0.5)
            print("a stack process exited; see the logs above", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping")
            return 0


def _load_state(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"no running stack found ({path} is missing): start one with `teebridge up`")
    return json.loads(path.read_text())


def _parse_value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _coerce(abi_type: str, value: object) -> object:
    """A ``0x`` hex string given for a ``bytes``/``bytesN`` input becomes bytes (eth_abi takes no hex)."""
    if abi_type.startswith("bytes") and not abi_type.endswith("]") and isinstance(value, str) and value[:2] == "0x":
        return bytes.fromhex(value[2:])
    return value


def _show(value: object) -> str:
    """An output value for printing: bytes as 0x hex."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _request(args: argparse.Namespace) -> int:
    import eth_abi
    import httpx

    from relayer.chain import ChainClient
    from teebridge.client import build_input, live_enclave_keys, send_via_consumer, wait_for_answer
    from teebridge.stack import USER_KEY
    from verifier.protocol import Status, job_id

    state = _load_state(args.state)
    d = state["deployment"]
    name, _, version = args.job.rpartition("@")
    if not name:
        raise ValueError(f"job must be name@version, got {args.job!r}")
    job = job_id(name, version)
    jobs = httpx.get(state["coprocessorUrl"] + "/v1/jobs", timeout=10).json()
    spec = next((j for j in jobs if j["jobId"] == "0x" + job.hex()), None)
    if spec is None:
        offered = ", ".join(f"{j['name']}@{j['version']}" for j in jobs)
        raise ValueError(f"the coprocessor has no job {args.job}; it offers: {offered}")
    types = args.types.split(",") if args.types else spec["inputTypes"]
    values = [_parse_value(v) for v in args.values]
    if types is not None:
        values = [_coerce(t, v) for t, v in zip(types, values, strict=False)]
    payload = eth_abi.encode(types, values) if types is not None else (values[0].encode() if values else b"")

    user = ChainClient(state["rpcUrl"], USER_KEY)
    router = user.contract("Router", d["router"])
    key = None
    if not args.plain:
        keys = live_enclave_keys(user.contract("EnclaveRegistry", d["registry"]), job, d["deploy_block"])
        if not keys:
            raise RuntimeError(f"no live enclave is registered and approved for {args.job}")
        key = keys[0]
    envelope = build_input(
        payload, encrypt_to=key, chain_id=d["chain_id"], router=d["router"], requester=d["consumer"], job_id=job
    )
    t0 = time.monotonic()
    sent = send_via_consumer(
        user,
        user.contract("ExampleConsumer", d["consumer"]),
        router,
        job,
        envelope,
        callback_gas_limit=args.gas,
        fee=args.fee,
    )
    print(f"request 0x{sent.request_id.hex()} ({'encrypted' if key else 'plain'}) in tx {sent.tx_hash}")
    answer = wait_for_answer(router, sent.request_id, from_block=sent.block_number, timeout=args.timeout)
    print(f"fulfilled in tx {answer.tx_hash} after {time.monotonic() - t0:.2f}s, status {Status(answer.status).name}")
    if answer.status != Status.OK:
        print(f"reason: {eth_abi.decode(['string'], answer.result)[0]}")
        return 1
    out_types = spec["outputTypes"]
    decoded = eth_abi.decode(out_types, answer.result) if out_types else ("0x" + answer.result.hex(),)
    print("answer:", ", ".join(_show(v) for v in decoded))
    return 0


def _status(args: argparse.Namespace) -> int:
    import httpx

    from relayer.store import Store

    state = _load_state(args.state)
    print(f"RPC       {state['rpcUrl']}")
    print(f"router    {state['deployment']['router']}")
    try:
        health = httpx.get(state["coprocessorUrl"] + "/v1/health", timeout=5).json()
        print(f"enclave   {state['coprocessorUrl']}: {health.get('status')} signer {health.get('signer')}")
    except httpx.HTTPError as exc:
        print(f"enclave   {state['coprocessorUrl']}: unreachable ({exc})")
    if state.get("relayerUrl"):
        print(f"relayer   {state['relayerUrl']} (/metrics, /health; POST /v1/secrets is forwarded to the enclave)")
        try:
            accounts = httpx.get(state["relayerUrl"] + "/health", timeout=5).json().get("accounts") or []
        except (httpx.HTTPError, ValueError):
            accounts = []
        for account in accounts:
            low = "  LOW BALANCE" if account.get("low_balance") else ""
            print(
                f"account   {account['address']}: balance {account['balance_wei']} wei, next nonce"
                f" {account['next_nonce']}, {account['pending_transactions']} unmined{low}"
            )
    db = args.state.parent / "relayer.sqlite"
    if db.exists():
        counts = Store(db).counts()
        print("requests  " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none yet"))
    return 0


def _feeds(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from relayer.chain import ChainClient
    from teebridge.deploy import Deployment, FeedParams, deploy_feeds

    if args.action == "set":
        deployment = Deployment.load(args.deployment)
        if args.pair not in deployment.feeds:
            raise ValueError(f"no feed for {args.pair} in {args.deployment}")
        if args.deviation_bps < 1:
            raise ValueError("--deviation-bps must be at least 1")
        settings = {**deployment.feed_settings, args.pair: {"deviation_bps": args.deviation_bps}}
        replace(deployment, feed_settings=settings).save(args.deployment)
        print(f"{args.pair}: push on moves of {args.deviation_bps} bps or more (heartbeat unchanged: on-chain)")
        return 0
    if args.action == "add":
        key = os.environ.get("TEEBRIDGE_DEPLOYER_KEY")
        if not key:
            raise RuntimeError("set TEEBRIDGE_DEPLOYER_KEY to the registry owner's private key")
        deployment = Deployment.load(args.deployment)
        if args.pair in deployment.feeds:
            raise ValueError(f"{args.pair} already has a feed at {deployment.feeds[args.pair]}")
        params = FeedParams(args.decimals, args.min_sources, args.heartbeat)
        updated = deploy_feeds(ChainClient(args.rpc_url, key), deployment, {args.pair: params})
        updated.save(args.deployment)
        print(f"{args.pair}: PriceFeed {updated.feeds[args.pair]} (record updated: {args.deployment})")
        print("add it to the feed pusher: --feed " + f"{args.pair}={updated.feeds[args.pair]}")
        return 0

    from teebridge.stack import USER_KEY

    state = _load_state(args.state)
    client = ChainClient(state["rpcUrl"], USER_KEY)
    now = client.w3.eth.get_block("latest")["timestamp"]
    feeds = state["deployment"].get("feeds") or {}
    if not feeds:
        print("no push feeds in this stack")
        return 0
    pairs = [args.pair] if args.action == "show" else sorted(feeds)
    for pair in pairs:
        if pair not in feeds:
            raise ValueError(f"no feed for {pair}; feeds: {', '.join(sorted(feeds))}")
        feed = client.contract("PriceFeed", feeds[pair])
        decimals = feed.functions.decimals().call()
        latest = feed.functions.latestRound().call()
        if latest == 0:
            print(f"{pair:<9} {feeds[pair]}  no rounds yet")
            continue
        count = args.rounds if args.action == "show" else 1
        for round_id in range(latest, max(0, latest - count), -1):
            _, answer, _, updated_at, _ = feed.functions.getRoundData(round_id).call()
            price = answer / 10**decimals
            print(
                f"{pair:<9} round {round_id:<5} {price:>14,.{min(decimals, 4)}f}  {now - updated_at:>6}s old  "
                f"{feeds[pair] if round_id == latest else ''}"
            )
    return 0


def _keys(args: argparse.Namespace) -> int:
    if args.action == "show":
        import httpx

        response = httpx.get(args.coprocessor.rstrip("/") + "/v1/keys", timeout=10)
        response.raise_for_status()
        print(json.dumps(response.json(), indent=2))
        return 0
    service = _gatekeeper_service(args)
    for url in args.coprocessor:
        rotation = service.rotate(url)
        print(
            f"{url}: rotated {rotation.old_signer} -> {rotation.new_signer} (registered until "
            f"{rotation.new_expiry}); old HPKE keys decrypt until {rotation.old_keys_retire_at}, then are destroyed"
        )
    return 0


def _gatekeeper(args: argparse.Namespace) -> int:
    import logging

    from teebridge.gatekeeper_service import Outcome

    service = _gatekeeper_service(args)
    if args.action == "run":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s gatekeeper %(levelname)s %(message)s")
        service.run_forever()
        return 0
    failed = False
    for result in service.check_all():
        print(f"{result.coprocessor}: {result.outcome.value} {result.signer or ''} {result.reason}".rstrip())
        failed |= result.outcome not in (Outcome.REGISTERED, Outcome.RENEWED, Outcome.FRESH)
    return 1 if failed else 0


def _gatekeeper_service(args: argparse.Namespace) -> GatekeeperService:
    from coprocessor.admin import ADMIN_TOKEN_VARIABLE
    from relayer.chain import ChainClient
    from teebridge.deploy import Deployment
    from teebridge.gatekeeper_service import GatekeeperService
    from verifier.gatekeeper import Allowlist, combined_evaluator, dcap_evaluator
    from verifier.hexutil import from_hex

    if args.public_url and len(args.public_url) != len(args.coprocessor):
        raise ValueError(
            f"{len(args.public_url)} --public-url for {len(args.coprocessor)} --coprocessor: give one public URL"
            " per --coprocessor, in the same order, or none"
        )
    key = os.environ.get("TEEBRIDGE_GATEKEEPER_KEY")
    if not key:
        raise RuntimeError("set TEEBRIDGE_GATEKEEPER_KEY to the gatekeeper account's private key")
    deployment = Deployment.load(args.deployment)
    allowlist = None
    if args.allow_simulated:
        allowlist = Allowlist(
            frozenset(from_hex(m, 32) for m in args.measurement), allow_simulated=True, validity_seconds=args.validity
        )
    hardware = None
    if args.policy:
        from verifier.dcap import fetch_collateral, load_collateral
        from verifier.policy import load_policy

        if args.collateral:
            collateral_file = load_collateral(args.collateral)

            def collateral_for(_quote: object) -> object:
                return collateral_file

        elif args.pccs_url:

            def collateral_for(quote: object) -> object:
                return fetch_collateral(args.pccs_url, quote)

        else:
            raise ValueError("--policy needs --collateral FILE or --pccs-url URL to verify quotes")
        hardware = dcap_evaluator(load_policy(args.policy), collateral_for, validity_seconds=args.validity)
    if allowlist is None and hardware is None:
        raise ValueError("nothing to accept: give --policy (TDX/SGX) and/or --allow-simulated with --measurement")
    return GatekeeperService(
        ChainClient(args.rpc_url, key),
        deployment.registry,
        args.coprocessor,
        combined_evaluator(allowlist=allowlist, hardware=hardware),
        renew_margin=args.renew_margin,
        check_interval=args.interval,
        endpoints=dict(zip(args.coprocessor, args.public_url, strict=False)),
        admin_token=os.environ.get(ADMIN_TOKEN_VARIABLE) or None,
    )


def _deploy(args: argparse.Namespace) -> int:
    from relayer.chain import ChainClient
    from teebridge.deploy import deploy_all

    key = os.environ.get("TEEBRIDGE_DEPLOYER_KEY")
    if not key:
        raise RuntimeError("set TEEBRIDGE_DEPLOYER_KEY to the deployer account's private key")
    deployment = deploy_all(
        ChainClient(args.rpc_url, key), args.gatekeeper, network=args.network, allow_simulated=args.allow_simulated
    )
    print(f"deployed; record written to {deployment.save()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
