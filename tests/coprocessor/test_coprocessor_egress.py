"""The egress guard: outgoing HTTP reaches public addresses only, unless ``egress_allow`` lists more.

Real servers listen on loopback addresses (127.0.0.1, 127.0.0.2, ::1); every other address in here is only
ever *refused*. A module-wide guard on ``socket.create_connection`` fails the test if anything tries to
connect outside the loopback range, so a broken guard shows up as a failure, never as traffic.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from coprocessor_testdata import CHAIN_ID, ROUTER
from eth_abi import decode, encode

from coprocessor.config import CoprocessorConfig
from coprocessor.egress import (
    EgressPolicy,
    EgressRefusedError,
    GuardedBackend,
    IPAddress,
    guarded_client,
    parse_networks,
    refusal_reason,
)
from coprocessor.executor import Executor, SignedFulfillment
from coprocessor.jobs import JobContext, JobError, JobRegistry
from coprocessor.jobs.http_json import HTTP_JSON_JOB, HTTP_JSON_V2_JOB, fetch
from coprocessor.jobs.llm_chat import LLM_CHAT_JOB
from coprocessor.keys import EnclaveKeys
from coprocessor.price.fetch import fetch_quotes
from coprocessor.price.observe import observe
from coprocessor.price.settings import PriceSettings
from teebridge.price_replay import PriceReplay
from tests.helpers import QuietJsonHandler, serve_http
from verifier.envelope import plain
from verifier.hashing import keccak256
from verifier.protocol import Request, Status

MEASUREMENT = keccak256(b"egress test measurement")
NO_PRIVATE = "the enclave does not fetch private networks"
DEFAULT = EgressPolicy()
"""The production default: public addresses only."""


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``socket.create_connection`` of the test, refusing (and failing the test on) non-loopback ones."""
    real = socket.create_connection
    attempts: list[tuple[str, int]] = []

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(address)
        if not ipaddress.ip_address(address[0]).is_loopback:
            pytest.fail(f"the test tried to connect to {address[0]}: the egress guard let it through")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return attempts


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.3.2.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("100.127.255.254", "shared (carrier-grade NAT)"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fec0::1", "site-local"),
        ("0.1.2.3", "special-purpose"),  # "this network"
        ("192.0.2.10", "special-purpose"),  # documentation
        ("198.18.0.1", "special-purpose"),  # benchmarking
        ("2001:db8::1", "special-purpose"),
        ("::ffff:127.0.0.1", "loopback (IPv4 in IPv6)"),
        ("::ffff:10.0.0.5", "private (IPv4 in IPv6)"),
        ("::ffff:169.254.169.254", "link-local (IPv4 in IPv6)"),
        ("64:ff9b::a9fe:a9fe", "link-local (IPv4 in IPv6)"),  # NAT64 of 169.254.169.254
        ("2002:a00:5::1", "private (IPv4 in IPv6)"),  # 6to4 of 10.0.0.5
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_policy_allows_listed_networks_only() -> None:
    policy = EgressPolicy.allowing("127.0.0.2", "10.1.0.0/16", "fd00::/8")
    allowed = ["127.0.0.2", "::ffff:127.0.0.2", "10.1.200.3", "fd00::5", "8.8.8.8"]
    assert [policy.refused_kind(ipaddress.ip_address(a)) for a in allowed] == [None] * len(allowed)
    assert policy.refused_kind(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert policy.refused_kind(ipaddress.ip_address("10.2.0.1")) == "private"
    assert EgressPolicy().refused_kind(ipaddress.ip_address("127.0.0.2")) == "loopback"
    with pytest.raises(EgressRefusedError, match="destination is a link-local address; " + NO_PRIVATE) as info:
        policy.check(ipaddress.ip_address("169.254.169.254"))
    assert "169.254" not in info.value.reason  # the reason never names the address


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.1/8", "999.1.1.1", ""])
def test_allow_list_takes_addresses_and_networks_only(entry: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        parse_networks([entry])


# ---------------------------------------------------------------- configuration


def test_config_reads_egress_allow_from_the_environment(tmp_path: Path) -> None:
    config = CoprocessorConfig.from_env({"TEEBRIDGE_COPROCESSOR_EGRESS_ALLOW": "127.0.0.1, ::1,10.1.0.0/16"})
    assert config.egress_allow == ("127.0.0.1/32", "::1/128", "10.1.0.0/16")
    assert config.egress_policy() == EgressPolicy.allowing("127.0.0.1", "::1", "10.1.0.0/16")
    assert CoprocessorConfig(data_dir=tmp_path).egress_allow == ()  # the default: nothing non-public
    with pytest.raises(ValueError, match="TEEBRIDGE_COPROCESSOR_EGRESS_ALLOW"):
        CoprocessorConfig.from_env({"TEEBRIDGE_COPROCESSOR_EGRESS_ALLOW": "metadata.internal"})


def test_a_price_base_url_on_a_refused_address_needs_an_explicit_allow(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"price_base_urls\['kraken'\] points at 127.0.0.1, a loopback address"):
        CoprocessorConfig(data_dir=tmp_path, price_base_urls={"kraken": "http://127.0.0.1:9000"})
    with pytest.raises(ValueError, match="link-local"):
        CoprocessorConfig(data_dir=tmp_path, price_base_urls={"*": "http://169.254.169.254/"})
    allowed = CoprocessorConfig(
        data_dir=tmp_path, price_base_urls={"kraken": "http://127.0.0.1:9000"}, egress_allow=("127.0.0.1",)
    )
    assert allowed.price_base_urls == {"kraken": "http://127.0.0.1:9000"}
    # a host name is checked when it is fetched (below), not at start
    assert CoprocessorConfig(data_dir=tmp_path, price_base_urls={"*": "http://localhost:9000"}).price_base_urls


# ---------------------------------------------------------------- real servers: http.json


class _Upstream(QuietJsonHandler):
    """``/price`` answers JSON; ``/to?url=...`` redirects there. Counts the requests it receives."""

    protocol_version = "HTTP/1.1"
    hits: list[str]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        if self.path.startswith("/to?url="):
            self.send_response(302)
            self.send_header("Location", self.path[len("/to?url=") :])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"price": "3150.5"}).encode()
        self.send_json(body)


def upstream() -> type[_Upstream]:
    """A handler class with its own hit list."""
    return type("Upstream", (_Upstream,), {"hits": []})


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 (refused by default): its base URL and its hit list."""
    handler = upstream()
    with serve_http(handler) as base:
        yield base, handler.hits


@pytest.fixture(scope="module")
def other_loopback() -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.2, the address the redirect tests allow."""
    handler = upstream()
    with serve_http(handler, host="127.0.0.2") as base:
        yield base, handler.hits


@pytest.fixture(scope="module")
def ipv6_loopback() -> Iterator[tuple[str, list[str]]]:
    """A server on ::1."""
    handler = upstream()
    with serve_http(handler, host="::1") as base:
        yield base, handler.hits


def job_context(policy: EgressPolicy = DEFAULT) -> JobContext:
    return JobContext(time.monotonic() + 5, http_timeout_seconds=2.0, http_max_response_bytes=4096, egress=policy)


def http_json(url: str, policy: EgressPolicy = DEFAULT) -> int:
    """Run http.json@1 for ``price`` as uint256 with 1 decimal; the value (a refusal raises JobError)."""
    return decode(["uint256"], HTTP_JSON_JOB.handler(job_context(policy), (url, "price", "uint256", 1)))[0]


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[Executor]:
    """The executor with the production default: no ``egress_allow``."""
    config = CoprocessorConfig(data_dir=tmp_path / "data", job_timeout_seconds=5.0, workers=2)
    with Executor(
        EnclaveKeys.generate(), JobRegistry([HTTP_JSON_JOB, HTTP_JSON_V2_JOB, LLM_CHAT_JOB]), config, MEASUREMENT
    ) as ex:
        yield ex


def run_job(
    executor: Executor, make_request: Callable[..., Request], job_id: bytes, payload: bytes
) -> SignedFulfillment:
    data = plain(payload)
    return executor.execute(CHAIN_ID, ROUTER, make_request(job_id, data), data)


def reason(signed: SignedFulfillment) -> str:
    return decode(["string"], signed.result)[0]


def test_loopback_is_refused_by_default_as_a_signed_job_failure(
    executor: Executor, make_request: Callable[..., Request], loopback: tuple[str, list[str]]
) -> None:
    base, hits = loopback
    before = len(hits)
    payload = encode(["string", "string", "string", "uint8"], [f"{base}/price", "price", "uint256", 1])
    signed = run_job(executor, make_request, HTTP_JSON_JOB.job_id, payload)
    assert signed.status == Status.JOB_FAILED  # the convention of every upstream failure
    assert (
        reason(signed)
        == f"destination is a loopback address; {NO_PRIVATE} (the operator's egress_allow lists exceptions)"
    )
    assert len(hits) == before  # refused before connecting: the server saw nothing


def test_the_same_url_works_once_the_address_is_allowed(loopback: tuple[str, list[str]]) -> None:
    base, hits = loopback
    before = len(hits)
    assert http_json(f"{base}/price", EgressPolicy.allowing("127.0.0.0/8")) == 31505
    assert len(hits) == before + 1


@pytest.mark.parametrize(
    "host_of",
    [
        lambda port: f"localhost:{port}",  # a name that resolves to a loopback address
        lambda port: f"[::ffff:127.0.0.1]:{port}",  # IPv4-mapped IPv6
        lambda port: f"2130706433:{port}",  # 127.0.0.1 as one decimal number, which getaddrinfo accepts
    ],
)
def test_other_spellings_of_loopback_are_refused(
    loopback: tuple[str, list[str]], host_of: Callable[[str], str]
) -> None:
    base, hits = loopback
    before = len(hits)
    with pytest.raises(JobError, match="loopback") as info:
        http_json(f"http://{host_of(base.rsplit(':', 1)[1])}/price")
    assert "127.0.0.1" not in info.value.reason
    assert len(hits) == before


def test_ipv6_loopback_is_refused_and_can_be_allowed(ipv6_loopback: tuple[str, list[str]]) -> None:
    base, hits = ipv6_loopback
    with pytest.raises(JobError, match="destination is a loopback address"):
        http_json(f"{base}/price")
    assert hits == []
    assert http_json(f"{base}/price", EgressPolicy.allowing("::1")) == 31505
    assert hits == ["/price"]


def test_a_redirect_to_a_refused_address_is_refused(
    loopback: tuple[str, list[str]], other_loopback: tuple[str, list[str]]
) -> None:
    """127.0.0.2 is allowed and redirects to 127.0.0.1, which is not: the second hop is checked too."""
    target, target_hits = loopback
    allowed, allowed_hits = other_loopback
    policy = EgressPolicy.allowing("127.0.0.2")
    before = len(target_hits)
    assert http_json(f"{allowed}/to?url={allowed}/price", policy) == 31505  # a redirect among allowed hosts works
    with pytest.raises(JobError, match="destination is a loopback address"):
        http_json(f"{allowed}/to?url={target}/price", policy)
    assert allowed_hits[-1] == f"/to?url={target}/price"  # the first hop was fetched...
    assert len(target_hits) == before  # ...the second never was


def test_a_redirect_to_cloud_metadata_is_refused(other_loopback: tuple[str, list[str]]) -> None:
    allowed, _ = other_loopback
    with pytest.raises(JobError, match="destination is a link-local address"):
        http_json(f"{allowed}/to?url=http://169.254.169.254/latest/meta-data/", EgressPolicy.allowing("127.0.0.2"))


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5/", "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "https://[fd00::1]/"],
)
def test_private_literals_are_refused_without_connecting(url: str, loopback_only: list[tuple[str, int]]) -> None:
    with pytest.raises(JobError, match=NO_PRIVATE):
        fetch(httpx.URL(url), job_context())
    assert loopback_only == []


# ---------------------------------------------------------------- a patched resolver: names and rebinding


class _Resolver:
    """Answers from a table of successive answers per host; records the lookups."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        queue = self.answers[host]
        found = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ipaddress.ip_address(a) for a in found]


def get(url: str, policy: EgressPolicy, resolver: _Resolver) -> int:
    with guarded_client(policy, resolver=resolver, timeout=2.0) as client:
        return client.get(url).status_code


def test_a_name_with_a_private_address_is_refused(loopback_only: list[tuple[str, int]]) -> None:
    resolver = _Resolver({"api.example": [["93.184.216.34", "10.0.0.5"]]})  # one public, one private: refused
    with pytest.raises(EgressRefusedError, match="destination is a private address"):
        get("http://api.example/", EgressPolicy(), resolver)
    assert resolver.lookups == ["api.example"] and loopback_only == []


def test_the_checked_address_is_the_one_connected_to(
    other_loopback: tuple[str, list[str]], loopback_only: list[tuple[str, int]]
) -> None:
    """DNS rebinding: the first answer (allowed) is used for the connection; the next answer (refused) is
    refused for the next connection. The URL keeps its host name (Host header; SNI for https)."""
    port = int(other_loopback[0].rsplit(":", 1)[1])
    resolver = _Resolver({"rebind.example": [["127.0.0.2"], ["127.0.0.1"]]})
    policy = EgressPolicy.allowing("127.0.0.2")
    assert get(f"http://rebind.example:{port}/price", policy, resolver) == 200
    assert loopback_only == [("127.0.0.2", port)]  # one lookup, one connection, to the address checked
    with pytest.raises(EgressRefusedError, match="loopback"):
        get(f"http://rebind.example:{port}/price", policy, resolver)
    assert resolver.lookups == ["rebind.example", "rebind.example"] and len(loopback_only) == 1


def test_unresolvable_names_and_unix_sockets_fail_cleanly() -> None:
    def nothing(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(httpcore.ConnectError, match="could not resolve"):
        GuardedBackend(EgressPolicy(), nothing).connect_tcp("nowhere.example", 80)
    with pytest.raises(EgressRefusedError, match="local socket"):
        GuardedBackend(EgressPolicy()).connect_unix_socket("/var/run/dstack.sock")


# ---------------------------------------------------------------- llm.chat and the price sources


def test_llm_chat_goes_through_the_same_guard(
    executor: Executor, make_request: Callable[..., Request], loopback: tuple[str, list[str]]
) -> None:
    base, hits = loopback
    before = len(hits)
    types = list(LLM_CHAT_JOB.input_types or ())
    payload = encode(types, [f"{base}/v1", "gpt-test", "", "hello", 16, 0, 1])
    signed = run_job(executor, make_request, LLM_CHAT_JOB.job_id, payload)
    assert signed.status == Status.JOB_FAILED and reason(signed).startswith("destination is a loopback address")
    assert len(hits) == before


def test_price_sources_go_through_the_same_guard(tmp_path: Path) -> None:
    """An operator's base URL gets no exception: a local exchange stand-in needs egress_allow like anything."""
    with PriceReplay({"ETH/USD": Decimal("3000")}) as replay:
        port = replay.base_url.rsplit(":", 1)[1]
        config = CoprocessorConfig(
            data_dir=tmp_path,
            price_sources={"ETH/USD": ("coinbase", "kraken", "bitstamp")},
            price_base_urls={"*": f"http://localhost:{port}"},  # a name: accepted at start, checked when fetched
        )
        settings = PriceSettings.from_config(config)
        result = fetch_quotes(settings.sources["ETH/USD"], job_context())
        assert result.quotes == () and replay.requests == {}
        assert {name for name, _ in result.failures} == {"coinbase", "kraken", "bitstamp"}
        assert all(reason.startswith("destination is a loopback address") for _, reason in result.failures)

        allowed = replace(config, egress_allow=("127.0.0.1",))
        observed = observe("ETH/USD", PriceSettings.from_config(allowed), job_context(allowed.egress_policy()))
        assert observed.aggregate.sources == 3 and observed.failures == ()
