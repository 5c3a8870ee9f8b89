"""Deploy the teebridge contracts and write the per-network deployment record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from relayer.chain import ChainClient
from teebridge.tools import REPO_ROOT

DEPLOYMENTS_DIR = REPO_ROOT / "deployments"
DEFAULT_MAX_CALLBACK_GAS = 2_000_000


@dataclass(frozen=True)
class Deployment:
    """Where the contracts of one network live."""

    network: str
    chain_id: int
    registry: str
    router: str
    consumer: str
    owner: str
    gatekeeper: str
    deploy_block: int
    max_callback_gas_limit: int
    governance_delay: int = 0
    batcher: str | None = None
    feeds: dict[str, str] = field(default_factory=dict)
    """Push feeds: pair (e.g. "ETH/USD") -> PriceFeed address."""
    feed_settings: dict[str, dict[str, int]] = field(default_factory=dict)
    """Off-chain push policy per pair, e.g. {"deviation_bps": 50}; the pusher re-reads it every pass."""

    def to_json(self) -> str:
        """The record as written to ``deployments/<network>.json``."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, path: Path) -> Deployment:
        """Read a deployment record."""
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path | None = None) -> Path:
        """Write the record (default ``deployments/<network>.json``)."""
        path = path or DEPLOYMENTS_DIR / f"{self.network}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path


def deploy_all(
    owner: ChainClient,
    gatekeeper: str,
    *,
    network: str = "localhost",
    allow_simulated: bool = False,
    max_callback_gas_limit: int = DEFAULT_MAX_CALLBACK_GAS,
    governance_delay: int = 0,
) -> Deployment:
    """Deploy registry, router and the example consumer from ``owner``'s account, and attach the router to the
    registry (``EnclaveRegistry.attachRouter``), which then mirrors every authorization into it.

    ``governance_delay`` is how long a proposed measurement approval stays public before it can be
    activated: 0 suits a local chain; a production network wants days.
    """
    registry, receipt = owner.deploy("EnclaveRegistry", owner.address, gatekeeper, governance_delay)
    router, _ = owner.deploy("Router", registry.address, max_callback_gas_limit)
    # Before any approval: from here on the registry pushes its authorizations into the Router.
    owner.send(registry.functions.attachRouter(router.address))
    consumer, _ = owner.deploy("ExampleConsumer", router.address)
    if allow_simulated:
        owner.send(registry.functions.setSimulatedAttestationsAllowed(True))
    return Deployment(
        network=network,
        chain_id=owner.chain_id,
        registry=registry.address,
        router=router.address,
        consumer=consumer.address,
        owner=owner.address,
        gatekeeper=gatekeeper,
        deploy_block=receipt["blockNumber"],
        max_callback_gas_limit=max_callback_gas_limit,
        governance_delay=governance_delay,
    )


@dataclass(frozen=True)
class FeedParams:
    """On-chain parameters of one push feed."""

    decimals: int = 8
    min_sources: int = 3
    heartbeat: int = 3600


def deploy_feeds(owner: ChainClient, deployment: Deployment, feeds: dict[str, FeedParams]) -> Deployment:
    """Deploy a PriceFeed per pair (and the batcher once); return the record with them added."""
    from verifier.price_report import feed_id

    batcher = deployment.batcher
    if batcher is None:
        contract, _ = owner.deploy("PriceFeedBatcher")
        batcher = contract.address
    added = dict(deployment.feeds)
    for pair, params in feeds.items():
        description = pair.replace("/", " / ")
        contract, _ = owner.deploy(
            "PriceFeed",
            deployment.registry,
            feed_id(pair),
            params.decimals,
            params.min_sources,
            params.heartbeat,
            description,
        )
        added[pair] = contract.address
    return replace(deployment, batcher=batcher, feeds=added)
