"""The local stack: anvil, the contracts, one coprocessor (simulated attestation) and one relayer.

Each part runs as its own process and they talk over real HTTP and JSON-RPC, as in production; only
the attestation is simulated (and says so).
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from coprocessor.measurement import code_measurement
from relayer.chain import ChainClient
from teebridge.anvil import DEV_KEYS, Anvil, free_port
from teebridge.deploy import Deployment, FeedParams, deploy_all, deploy_feeds
from teebridge.gatekeeper_service import GatekeeperService, Outcome
from teebridge.price_replay import PriceReplay
from teebridge.processes import FEEDER_READY, RELAYER_READY, Child, python_module
from teebridge.registration import approve_jobs
from verifier.gatekeeper import Allowlist, Registration, simulated_evaluator
from verifier.hexutil import from_hex

OWNER_KEY, GATEKEEPER_KEY, RELAYER_KEY, USER_KEY, FEEDER_KEY = DEV_KEYS[:5]
INITIAL_PRICES = {"ETH/USD": Decimal("3000"), "BTC/USD": Decimal("65000")}
STATE_FILE = "stack.json"
LOCAL_EGRESS_ALLOW = ("127.0.0.1",)
"""What the local stack's coprocessor may fetch although it is not public (``coprocessor.egress``)."""

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class LocalStack:
    """Start with :meth:`start`, stop with :meth:`stop` (or use it as a context manager)."""

    workdir: Path | None = None
    anvil_port: int = 0
    anvil_args: tuple[str, ...] = ()
    """Extra anvil arguments, e.g. ``("--state", path)`` to keep the chain across an anvil restart."""
    write_deployment: Path | None = None
    relayer_poll_interval: float = 0.2
    with_relayer: bool = True
    with_feeds: bool = False
    """Also run a price replay server, ETH/USD and BTC/USD push feeds and a feed pusher."""
    feed_interval: float = 1.0
    price_walk_seconds: float = 0.0
    """When > 0 (``teebridge up``), move the replayed prices by a small random step this often."""
    egress_allow: tuple[str, ...] = LOCAL_EGRESS_ALLOW
    """The coprocessor's ``egress_allow``: 127.0.0.1, so its jobs can fetch the price replay server and the
    local test APIs. A local-only setting; ``()`` gives the production default (no non-public address)."""
    progress: Progress = _quiet
    anvil: Anvil = field(init=False)
    deployment: Deployment = field(init=False)
    registration: Registration = field(init=False)
    gatekeeper: GatekeeperService = field(init=False)
    coprocessor: Child = field(init=False)
    relayer: Child | None = field(init=False, default=None)
    feeder: Child | None = field(init=False, default=None)
    price_replay: PriceReplay | None = field(init=False, default=None)
    record: Path | None = field(init=False, default=None)
    """The deployment record the feed pusher follows (``teebridge feeds set`` edits it)."""
    coprocessor_url: str = field(init=False, default="")
    relayer_url: str = field(init=False, default="")
    """The relayer's operator endpoint: /metrics, /health, and secret uploads forwarded to the coprocessor."""
    _own_workdir: bool = field(init=False, default=False)
    _relayers: list[Child] = field(init=False, default_factory=list)
    """Every relayer process :meth:`start_relayer` started: :meth:`stop` stops them all, so none outlives the
    stack (a test's extra relayer that it forgot to stop, or one left by a failing test)."""

    def start(self) -> LocalStack:
        """Bring everything up; on any failure, stop what was started and re-raise."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="teebridge-stack-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.anvil = Anvil(port=self.anvil_port, extra_args=self.anvil_args)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        assert self.workdir is not None
        self.progress("starting anvil")
        self.anvil.start()
        owner = ChainClient(self.anvil.rpc_url, OWNER_KEY)
        gatekeeper = ChainClient(self.anvil.rpc_url, GATEKEEPER_KEY)
        self.progress("deploying EnclaveRegistry, Router, ExampleConsumer")
        self.deployment = deploy_all(owner, gatekeeper.address, allow_simulated=True)
        if self.write_deployment:
            self.deployment.save(self.write_deployment)

        coprocessor_env = {"TEEBRIDGE_COPROCESSOR_EGRESS_ALLOW": ",".join(self.egress_allow)}
        if self.with_feeds:
            self.progress("starting the price replay server (recorded exchange responses, prices you can move)")
            self.price_replay = PriceReplay(dict(INITIAL_PRICES)).start()
            coprocessor_env["TEEBRIDGE_COPROCESSOR_PRICE_BASE_URLS"] = f"*={self.price_replay.base_url}"
        self.progress("starting coprocessor (SIMULATED attestation: not a TEE)")
        self.coprocessor = Child(
            "coprocessor",
            python_module("coprocessor", "--data-dir", str(self.workdir / "coprocessor"), "--port", "0"),
            self.workdir / "coprocessor.log",
            env=coprocessor_env,
        ).start()
        self.coprocessor_url = self.coprocessor.wait_for_url()

        self.progress("owner: approving the coprocessor's measurement for its jobs")
        measurement = code_measurement()  # computed here from the source we ship, never taken from the enclave
        jobs = [from_hex(j) for j in _list_jobs(self.coprocessor_url)]
        approve_jobs(owner, self.deployment.registry, measurement, jobs)
        self.progress("gatekeeper: verifying the coprocessor's attestation and registering its signer")
        allowlist = Allowlist(frozenset({measurement}), allow_simulated=True)
        self.gatekeeper = GatekeeperService(
            gatekeeper,
            self.deployment.registry,
            [self.coprocessor_url],
            simulated_evaluator(allowlist),
            endpoints={self.coprocessor_url: self.coprocessor_url},  # relayers with --discover find it
        )
        result = self.gatekeeper.check(self.coprocessor_url)
        if result.outcome is not Outcome.REGISTERED:
            outcome = f"{result.outcome.value} {result.reason}"
            raise RuntimeError(f"the gatekeeper did not register the coprocessor: {outcome}")
        self.registration = self.gatekeeper.registry_view(result.signer)

        if self.with_feeds:
            self._start_feeds(owner)
        if self.with_relayer:
            self.progress("starting relayer")
            self.relayer = self.start_relayer()
            self.relayer.wait_for_line(RELAYER_READY, after=self.relayer.log_offset)
            self._write_state()

    def start_relayer(
        self,
        db_name: str = "relayer.sqlite",
        extra_env: dict[str, str] | None = None,
        *,
        db: str | None = None,
        key: str = RELAYER_KEY,
        keys: tuple[str, ...] = (),
        name: str = "relayer",
        extra_args: tuple[str, ...] = (),
        rpc_urls: tuple[str, ...] = (),
        coprocessors: tuple[str, ...] | None = None,
    ) -> Child:
        """Start (or restart) a relayer process with its state in ``workdir/db_name`` (or ``db``, e.g. a
        ``postgresql://`` URL shared by several relayers), paying from ``key`` (or from every one of ``keys``, given
        as ``TEEBRIDGE_RELAYER_KEYS``), logging to ``workdir/name.log``;
        reading the chain through ``rpc_urls`` (with failover, in this order) instead of anvil's URL if given;
        sending work to ``coprocessors`` (default: the stack's one; ``()`` with ``--discover`` in ``extra_args``
        for a relayer that finds them in the registry).
        """
        assert self.workdir is not None
        if not self.relayer_url:
            self.relayer_url = f"http://127.0.0.1:{free_port()}"
        child = Child(
            "relayer",
            python_module(
                "relayer",
                *(arg for url in rpc_urls or (self.anvil.rpc_url,) for arg in ("--rpc-url", url)),
                "--router",
                self.deployment.router,
                *(
                    arg
                    for url in ((self.coprocessor_url,) if coprocessors is None else coprocessors)
                    for arg in ("--coprocessor", url)
                ),
                "--db",
                db or str(self.workdir / db_name),
                "--start-block",
                str(self.deployment.deploy_block),
                "--poll-interval",
                str(self.relayer_poll_interval),
                *(("--metrics-port", self.relayer_url.rsplit(":", 1)[1]) if name == "relayer" else ()),
                *extra_args,
            ),
            self.workdir / f"{name}.log",
            env={
                **({"TEEBRIDGE_RELAYER_KEYS": ",".join(keys)} if keys else {"TEEBRIDGE_RELAYER_KEY": key}),
                **(extra_env or {}),
            },
        ).start()
        self._relayers.append(child)
        return child

    def _start_feeds(self, owner: ChainClient) -> None:
        assert self.workdir is not None
        self.progress("deploying the ETH/USD and BTC/USD push feeds and starting the feed pusher")
        self.deployment = deploy_feeds(owner, self.deployment, {pair: FeedParams() for pair in INITIAL_PRICES})
        self.deployment = replace(
            self.deployment, feed_settings={pair: {"deviation_bps": 50} for pair in self.deployment.feeds}
        )
        if self.write_deployment:
            self.deployment.save(self.write_deployment)
        self.record = self.write_deployment or self.workdir / "deployment.json"
        self.deployment.save(self.record)
        self.feeder = Child(
            "feeder",
            python_module(
                "relayer.feed_pusher",
                "--rpc-url",
                self.anvil.rpc_url,
                "--registry",
                self.deployment.registry,
                "--coprocessor",
                self.coprocessor_url,
                "--batcher",
                str(self.deployment.batcher),
                "--interval",
                str(self.feed_interval),
                "--deployment",
                str(self.record),
            ),
            self.workdir / "feeder.log",
            env={"TEEBRIDGE_FEEDER_KEY": FEEDER_KEY},
        ).start()
        self.feeder.wait_for_line(FEEDER_READY, after=self.feeder.log_offset)
        if self.price_walk_seconds > 0:
            self._walk_stop = threading.Event()
            threading.Thread(target=self._walk_prices, daemon=True).start()

    def _walk_prices(self) -> None:
        """A gentle random walk (up to ±1 % a step) so a running stack shows its feeds following the market."""
        rng = random.Random()
        prices = dict(INITIAL_PRICES)
        while not self._walk_stop.wait(self.price_walk_seconds):
            for pair, price in prices.items():
                prices[pair] = (price * (1 + Decimal(rng.randint(-100, 100)) / 10_000)).quantize(Decimal("0.01"))
                if self.price_replay is not None:
                    self.price_replay.set_price(pair, prices[pair])

    def _write_state(self) -> None:
        assert self.workdir is not None
        state = {
            "rpcUrl": self.anvil.rpc_url,
            "coprocessorUrl": self.coprocessor_url,
            "relayerUrl": self.relayer_url,
            "deployment": json.loads(self.deployment.to_json()),
            "signer": self.registration.signer,
            "priceReplayUrl": self.price_replay.base_url if self.price_replay else None,
            "record": str(self.record) if self.record else None,
            "logs": {"coprocessor": str(self.coprocessor.log_path), "relayer": str(self.workdir / "relayer.log")},
        }
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def stop(self) -> None:
        """Stop the relayer, the coprocessor and anvil (in that order); remove a temporary workdir."""
        if getattr(self, "_walk_stop", None) is not None:
            self._walk_stop.set()
        for child in (self.feeder, *self._relayers, self.coprocessor if hasattr(self, "coprocessor") else None):
            if child is not None:
                child.stop()
        if getattr(self, "price_replay", None) is not None:
            self.price_replay.stop()
        if getattr(self, "anvil", None) is not None:
            self.anvil.stop()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _list_jobs(coprocessor_url: str) -> list[str]:
    import httpx

    response = httpx.get(coprocessor_url.rstrip("/") + "/v1/jobs", timeout=10)
    response.raise_for_status()
    data = response.json()
    items = data["jobs"] if isinstance(data, dict) else data
    return [item["jobId"] for item in items]
