"""Gas of the Router's request / fulfill / fulfillBatch, measured from receipts on a real anvil.

Run ``python -m bench.gas`` (what ``make bench`` runs). Prints Markdown tables and writes
``bench/results/gas-detail.json`` (every row below) and ``bench/results/gas.json`` (issue 6's summary: the
trivial-callback figures for teebridge beside the peers' own contracts measured on the same anvil, see
:mod:`bench.peers` and :mod:`bench.schema`). Every figure is the median of ``--repeats`` fresh transactions
(default 5; 2 for the 50-item batch); figures move by a few tens of gas between runs because hashes and
signatures in the calldata hold a varying number of zero bytes (4 gas instead of 16).

anvil runs with its default hardfork and ``--steps-tracing`` (which only enables step traces; it does not
change gas). Definitions:

* **gas used**: the receipt's ``gasUsed``, net of storage refunds (e.g. 4,800 for deleting the commitment)
  and never below the EIP-7623 calldata floor (21,000 + 10 gas per calldata token).
* **intrinsic**: 21,000 + calldata at 4 gas per zero byte and 16 per non-zero byte (EIP-2028), computed from
  the transaction's input: what any EVM transaction carrying the same bytes pays before executing.
* **callback** (consumer code): the gas used inside the consumer's call frames (callTracer), i.e. everything
  the consumer's ``handleFulfillment`` does (ExampleConsumer stores the answer and emits an event), without
  the CALL opcode's own cost. The peers' figures in :mod:`bench.peers` use the same definition.
* **overhead**: gas used minus callback, i.e. what the submitter pays on top of the consumer's callback,
  intrinsic part and the CALL included. **router execution** is overhead minus intrinsic.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import eth_abi
from web3.contract import Contract

from bench import peers
from bench.harness import (
    CREDIT_SCORE_JOB,
    ECHO_JOB,
    Chain,
    DevEnclave,
    GasBreakdown,
    breakdown,
    environment,
    fulfilled_events,
    pseudo_random_bytes,
    register,
    requested,
    write_json,
)
from bench.schema import SYSTEMS, gas_document
from teebridge.anvil import Anvil
from teebridge.client import failed_callbacks
from teebridge.testkit import fulfill_packed_call
from verifier.envelope import Binding, encrypt, plain
from verifier.protocol import Request, pack_fulfillment
from verifier.suites import HpkeKeyPair, Suite

CALLBACK_GAS_LIMIT = 300_000  # teebridge.client.send_via_consumer's default
TTL = 3600
FEE = 10**15
#: annual income, total debt, missed payments, account age (months): the demo's applicant.
APPLICANT = [85_000, 22_000, 1, 52]
CREDIT_SCORE_INPUT_TYPES = ["uint256", "uint256", "uint16", "uint16"]
CREDIT_SCORE_RESULT = eth_abi.encode(["uint16"], [712])  # 32 bytes, like the credit-score job's answer
BATCH_SIZES = (1, 10, 50)
TRIVIAL_INPUT_BYTES = 64  # issue 6: "request with a 64-byte input"
TRIVIAL_BATCH_SIZES = (10, 50)
ANVIL_ARGS = ("--steps-tracing",)


def median(values: list[int]) -> int:
    return int(statistics.median(values))


@dataclass
class Row:
    """One measured operation: the samples' breakdowns (with, for fulfilments, the consumer's own gas)."""

    key: str
    label: str
    samples: list[GasBreakdown] = field(default_factory=list)
    fulfils: bool = False
    items: int = 1
    note: str = ""

    def med(self, attr: str) -> int | None:
        values = [getattr(s, attr) for s in self.samples]
        return None if any(v is None for v in values) else median(values)

    @property
    def gas_used(self) -> int:
        return median([s.gas_used for s in self.samples])

    @property
    def intrinsic(self) -> int:
        return median([s.intrinsic for s in self.samples])

    @property
    def callback(self) -> int | None:
        return self.med("callee_gas") if self.fulfils else None

    @property
    def overhead(self) -> int | None:
        if not self.fulfils:
            return None
        return median([s.gas_used - (s.callee_gas or 0) for s in self.samples])

    def to_json(self) -> dict[str, Any]:
        n = self.items
        doc: dict[str, Any] = {
            "label": self.label,
            "items": n,
            "samples": len(self.samples),
            "gasUsed": self.gas_used,
            "gasUsedRange": [min(s.gas_used for s in self.samples), max(s.gas_used for s in self.samples)],
            "intrinsic": self.intrinsic,
            "execution": self.gas_used - self.intrinsic,
            "calldataBytes": self.med("calldata_bytes"),
            "calldataFloor": self.med("calldata_floor"),
            "calldataFloorBinding": any(s.floor_binding for s in self.samples),
        }
        if self.med("traced_execution") is not None:
            doc["tracedExecutionBeforeRefunds"] = self.med("traced_execution")
        if self.fulfils:
            doc["consumerCodeGasUsed"] = self.callback
            doc["overhead"] = self.overhead
            doc["routerExecution"] = self.overhead - self.intrinsic  # type: ignore[operator]
        if n > 1:
            doc["perItem"] = {
                "gasUsed": round(self.gas_used / n),
                "intrinsic": round(self.intrinsic / n),
                "consumerCodeGasUsed": round(self.callback / n) if self.callback is not None else None,
                "overhead": round(self.overhead / n) if self.overhead is not None else None,
            }
        if self.note:
            doc["note"] = self.note
        doc["raw"] = [s.to_json() for s in self.samples]
        return doc


@dataclass(frozen=True)
class PackedFulfillment:
    """``Router.fulfillPacked``'s calldata after its selector (:func:`verifier.protocol.pack_fulfillment`)."""

    body: bytes


@dataclass(frozen=True)
class SignedBatch:
    """``Router.fulfillBatchSigned``'s arguments ``(items, measurement, r, vs)``."""

    args: tuple[bytes, bytes, bytes, bytes]


class GasBench:
    """Deploy once, then measure each operation on fresh requests."""

    def __init__(self, chain: Chain, repeats: int, say: Callable[[str], None]) -> None:
        self.chain = chain
        self.repeats = repeats
        self.say = say
        jobs = (ECHO_JOB, CREDIT_SCORE_JOB)
        self.enclave = DevEnclave.fixed(1)
        self.hpke_public = register(chain, self.enclave, jobs, simulated=False)
        self.simulated_enclave = DevEnclave.fixed(2)
        register(chain, self.simulated_enclave, jobs, simulated=True)
        self.pq_public = HpkeKeyPair.generate(Suite.MLKEM768_X25519).public_key
        self.rows: dict[str, Row] = {}
        self._seed = 0
        self._trivial: Contract | None = None

    # ---- inputs

    def _next_seed(self) -> int:
        self._seed += 1
        return self._seed

    def plain_input(self, total_len: int) -> bytes:
        """A plain envelope of exactly ``total_len`` bytes (0x00 tag + pseudo-random payload)."""
        return plain(pseudo_random_bytes(total_len - 1, self._next_seed()))

    def pq_credit_score_input(self, requester: str) -> bytes:
        """The same applicant sealed with the post-quantum suite (ML-KEM-768 + X25519): 1,273 bytes."""
        payload = eth_abi.encode(CREDIT_SCORE_INPUT_TYPES, APPLICANT)
        d = self.chain.deployment
        binding = Binding(d.chain_id, d.router, requester, CREDIT_SCORE_JOB)
        return encrypt(payload, self.pq_public, binding, suite=Suite.MLKEM768_X25519)

    def credit_score_input(self, requester: str) -> bytes:
        """The demo's applicant, HPKE-encrypted and bound to this request's context (185 bytes)."""
        payload = eth_abi.encode(CREDIT_SCORE_INPUT_TYPES, APPLICANT)
        d = self.chain.deployment
        return encrypt(payload, self.hpke_public, Binding(d.chain_id, d.router, requester, CREDIT_SCORE_JOB))

    # ---- transactions

    def request_via_consumer(self, job: bytes, envelope: bytes, fee: int = 0) -> tuple[Request, Any]:
        consumer = self.chain.consumer(self.chain.user)
        receipt = self.chain.user.send(consumer.functions.send(job, envelope, CALLBACK_GAS_LIMIT, TTL), value=fee)
        return requested(self.chain, receipt), receipt

    def request_from_eoa(self, job: bytes, envelope: bytes) -> tuple[Request, Any]:
        router = self.chain.router(self.chain.user)
        receipt = self.chain.user.send(router.functions.request(job, envelope, CALLBACK_GAS_LIMIT, TTL))
        return requested(self.chain, receipt), receipt

    def signed_args(self, request: Request, result: bytes, enclave: DevEnclave | None = None) -> tuple:
        return (enclave or self.enclave).sign(request, result, self.chain.domain).call_args(request)

    def fulfill(
        self,
        row: Row,
        args: tuple | list | SignedBatch | PackedFulfillment,
        expected: int = 1,
        *,
        steps: bool = True,
        callee: str | None = None,
    ) -> Any:
        """Send a fulfil call (``fulfill`` for one item, ``fulfillBatch`` for a list, ``fulfillBatchSigned`` for
        a :class:`SignedBatch`, ``fulfillPacked`` for a :class:`PackedFulfillment`) and record it in ``row``.

        ``callee`` is the consumer whose call frames count as its own code (default: the ExampleConsumer).
        """
        router = self.chain.router(self.chain.relayer)
        if isinstance(args, PackedFulfillment):
            call = fulfill_packed_call(self.chain.w3, router.address, args.body)
        elif isinstance(args, SignedBatch):
            call = router.functions.fulfillBatchSigned(*args.args)
        elif isinstance(args, list):
            call = router.functions.fulfillBatch(args)
        else:
            call = router.functions.fulfill(args)
        receipt = self.chain.relayer.send(call)
        events = fulfilled_events(self.chain, receipt)
        failed = failed_callbacks(self.chain.router(), receipt)
        if len(events) != expected or failed:
            raise RuntimeError(f"expected {expected} successful callbacks, got {len(events)} and {len(failed)} failed")
        callee = callee or self.chain.deployment.consumer
        row.samples.append(breakdown(self.chain, receipt, steps=steps, callee=callee))
        row.fulfils = True
        return call

    def row(self, key: str, label: str, **kw: Any) -> Row:
        self.rows[key] = Row(key, label, **kw)
        return self.rows[key]

    # ---- measurements

    def run(self) -> None:
        self.measure_requests()
        self.measure_fulfill()
        self.measure_batches()
        self.measure_trivial()

    def trivial_consumer(self) -> Contract:
        """The TrivialConsumer (deployed on first use): its callback is one 32-byte store to a fresh slot."""
        if self._trivial is None:
            self._trivial, _ = self.chain.owner.deploy("TrivialConsumer", self.chain.deployment.router)
        return self._trivial

    def request_via_trivial(self, envelope: bytes) -> tuple[Request, Any]:
        consumer = self.chain.user.contract("TrivialConsumer", self.trivial_consumer().address)
        receipt = self.chain.user.send(consumer.functions.send(ECHO_JOB, envelope, CALLBACK_GAS_LIMIT, TTL))
        return requested(self.chain, receipt), receipt

    def measure_trivial(self) -> None:
        """The issue-6 comparison case: a 64-byte input, a 32-byte result stored by the TrivialConsumer."""
        c = self.chain
        self.say("trivial callback (TrivialConsumer) ...")
        callee = self.trivial_consumer().address
        self.request_via_trivial(self.plain_input(TRIVIAL_INPUT_BYTES))  # Router.nonce is warm already; no-op
        req = self.row("request_trivial_plain64", "TrivialConsumer.send, 64-byte plain input")
        eoa = self.row("request_eoa_plain64", "Router.request from an EOA, 64-byte plain input")
        ful = self.row("fulfill_trivial", "fulfill, TrivialConsumer callback (one 32-byte store to a fresh slot)")
        packed = self.row(
            "fulfill_packed_trivial",
            "fulfillPacked, TrivialConsumer callback (one 32-byte store to a fresh slot)",
            note="the call the relayer sends for a single result: fulfill's checks on a packed item",
        )
        for _ in range(self.repeats):
            request, receipt = self.request_via_trivial(self.plain_input(TRIVIAL_INPUT_BYTES))
            req.samples.append(breakdown(c, receipt))
            eoa.samples.append(breakdown(c, self.request_from_eoa(ECHO_JOB, self.plain_input(TRIVIAL_INPUT_BYTES))[1]))
            result = pseudo_random_bytes(32, self._next_seed())
            self.fulfill(ful, self.signed_args(request, result), steps=False, callee=callee)
            request, _ = self.request_via_trivial(self.plain_input(TRIVIAL_INPUT_BYTES))
            signed = self.enclave.sign(request, pseudo_random_bytes(32, self._next_seed()), c.domain)
            r, vs = signed.compact_signature()
            body = pack_fulfillment(request, signed.status, signed.result, signed.measurement, r, vs)
            self.fulfill(packed, PackedFulfillment(body), steps=False, callee=callee)
        for n in TRIVIAL_BATCH_SIZES:
            batch = self.row(f"fulfill_batch_trivial_{n}", f"fulfillBatch, {n} TrivialConsumer callbacks", items=n)
            for _ in range(self.repeats if n <= 10 else min(self.repeats, 2)):
                items = [
                    self.signed_args(
                        self.request_via_trivial(self.plain_input(TRIVIAL_INPUT_BYTES))[0],
                        pseudo_random_bytes(32, self._next_seed()),
                    )
                    for _ in range(n)
                ]
                self.fulfill(batch, items, expected=n, steps=False, callee=callee)
            signed = self.row(
                f"fulfill_batch_signed_trivial_{n}",
                f"fulfillBatchSigned (one enclave signature), {n} TrivialConsumer callbacks",
                items=n,
            )
            for _ in range(self.repeats if n <= 10 else min(self.repeats, 2)):
                answers = [
                    (
                        self.request_via_trivial(self.plain_input(TRIVIAL_INPUT_BYTES))[0],
                        pseudo_random_bytes(32, self._next_seed()),
                        0,
                    )
                    for _ in range(n)
                ]
                batch_args = SignedBatch(self.enclave.sign_batch(answers, c.domain))
                self.fulfill(signed, batch_args, expected=n, steps=False, callee=callee)

    def teebridge_summary(self) -> dict[str, int]:
        """The ``teebridge`` entry of ``bench/results/gas.json`` (see :mod:`bench.schema`), from the trivial rows.

        ``fulfill_overhead`` is gas used minus the consumer's own code (callTracer), the definition used for
        every system in that file, so it includes the CALL into the consumer.
        """
        rows = self.rows
        ful = rows["fulfill_packed_trivial"]  # what the relayer sends for one result; `fulfill` is in gas-detail
        doc: dict[str, int] = {
            "request": rows["request_trivial_plain64"].gas_used,
            "fulfill": ful.gas_used,
            "fulfill_overhead": median([s.gas_used - (s.callee_gas or 0) for s in ful.samples]),
        }
        for n in TRIVIAL_BATCH_SIZES:
            # the relayer sends batches with fulfillBatchSigned (one enclave signature) whenever the enclave
            # signs the batch, so that is the figure; fulfillBatch (one signature per item) is in gas-detail.json
            row = rows[f"fulfill_batch_signed_trivial_{n}"]
            doc[f"batch{n}_per_item"] = round(row.gas_used / n)
            doc[f"batch{n}_overhead_per_item"] = round(
                median([s.gas_used - (s.callee_gas or 0) for s in row.samples]) / n
            )
        return doc

    def measure_requests(self) -> None:
        c = self.chain
        self.say("request ...")
        # The first request on a fresh Router/consumer writes two zero slots (Router.nonce and
        # ExampleConsumer.lastRequestId): recorded on its own; every other figure is steady state.
        first = self.row(
            "request_first_ever",
            "request via ExampleConsumer.send, first on a fresh deployment",
            note="Router.nonce and ExampleConsumer.lastRequestId go from zero to non-zero "
            "(2 x 17,100 more than a non-zero to non-zero write)",
        )
        first.samples.append(breakdown(c, self.request_via_consumer(ECHO_JOB, self.plain_input(32))[1]))

        cases = [
            ("plain32", "32-byte plain input", lambda _requester: self.plain_input(32), ECHO_JOB),
            ("plain256", "256-byte plain input", lambda _requester: self.plain_input(256), ECHO_JOB),
            ("hpke_credit_score", "HPKE credit-score input (185 bytes)", self.credit_score_input, CREDIT_SCORE_JOB),
            (
                "hpke_pq_credit_score",
                "post-quantum HPKE credit-score input (1,273 bytes)",
                self.pq_credit_score_input,
                CREDIT_SCORE_JOB,
            ),
        ]
        for key, what, make, job in cases:
            via = self.row(f"request_consumer_{key}", f"ExampleConsumer.send, {what}")
            eoa = self.row(f"request_eoa_{key}", f"Router.request from an EOA, {what}")
            for _ in range(self.repeats):
                via.samples.append(breakdown(c, self.request_via_consumer(job, make(c.deployment.consumer))[1]))
                eoa.samples.append(breakdown(c, self.request_from_eoa(job, make(c.user.address))[1]))
        paid = self.row(
            "request_consumer_plain32_fee",
            "ExampleConsumer.send, 32-byte plain input, with a fee",
            note=f"msg.value = {FEE} wei, forwarded by the consumer to the Router",
        )
        for _ in range(self.repeats):
            paid.samples.append(breakdown(c, self.request_via_consumer(ECHO_JOB, self.plain_input(32), fee=FEE)[1]))

    def measure_fulfill(self) -> None:
        c = self.chain
        self.say("fulfill ...")
        fulfil = self.row("fulfill_credit_score", "fulfill, credit-score answer (32-byte result)")
        fulfil_fee = self.row(
            "fulfill_credit_score_fee",
            "fulfill, credit-score answer, with a fee",
            note="adds the fee transfer to the submitter (CALL with value)",
        )
        fulfil_sim = self.row(
            "fulfill_credit_score_simulated",
            "fulfill, credit-score answer, simulated-attestation signer",
            note="the registry reads simulatedAttestationsAllowed for a simulated signer "
            "(one more cold SLOAD); the local stack and the demo use such a signer",
        )
        fulfil256 = self.row("fulfill_echo256", "fulfill, 256-byte result")
        replay = self.row("fulfill_replay", "fulfill replayed (already fulfilled: FulfillmentSkipped, no-op)")
        enc = self.credit_score_input(c.deployment.consumer)
        for _ in range(self.repeats):
            request, _ = self.request_via_consumer(CREDIT_SCORE_JOB, enc)
            call = self.fulfill(fulfil, self.signed_args(request, CREDIT_SCORE_RESULT))
            again = c.relayer.send(call)
            if fulfilled_events(c, again):
                raise RuntimeError("a replayed fulfilment was delivered twice")
            replay.samples.append(breakdown(c, again, steps=True))

            request, _ = self.request_via_consumer(CREDIT_SCORE_JOB, enc, fee=FEE)
            self.fulfill(fulfil_fee, self.signed_args(request, CREDIT_SCORE_RESULT))

            request, _ = self.request_via_consumer(CREDIT_SCORE_JOB, enc)
            self.fulfill(fulfil_sim, self.signed_args(request, CREDIT_SCORE_RESULT, self.simulated_enclave))

            request, _ = self.request_via_consumer(ECHO_JOB, self.plain_input(32))
            self.fulfill(fulfil256, self.signed_args(request, pseudo_random_bytes(256, self._next_seed())))

    def measure_batches(self) -> None:
        self.say("fulfillBatch ...")
        enc = self.credit_score_input(self.chain.deployment.consumer)
        for n in BATCH_SIZES:
            batch = self.row(f"fulfill_batch_{n}", f"fulfillBatch, {n} credit-score answers", items=n)
            for _ in range(self.repeats if n <= 10 else min(self.repeats, 2)):
                items = [
                    self.signed_args(self.request_via_consumer(CREDIT_SCORE_JOB, enc)[0], CREDIT_SCORE_RESULT)
                    for _ in range(n)
                ]
                self.fulfill(batch, items, expected=n, steps=False)


# ------------------------------------------------------------------ report


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{round(value):,}"


def markdown(rows: dict[str, Row]) -> str:
    lines = [
        "#### Request (`Router.request`), no fee unless stated",
        "",
        "| path, input | input bytes | gas used | intrinsic (21,000 + calldata) | execution |",
        "|---|---:|---:|---:|---:|",
    ]
    request_keys = [
        ("request_consumer_plain32", 32),
        ("request_consumer_plain256", 256),
        ("request_consumer_hpke_credit_score", 185),
        ("request_consumer_hpke_pq_credit_score", 1273),
        ("request_eoa_plain32", 32),
        ("request_eoa_plain256", 256),
        ("request_eoa_hpke_credit_score", 185),
        ("request_eoa_hpke_pq_credit_score", 1273),
        ("request_consumer_plain32_fee", 32),
        ("request_first_ever", 32),
    ]
    for key, size in request_keys:
        row = rows[key]
        lines.append(
            f"| {row.label} | {size} | {_fmt(row.gas_used)} | {_fmt(row.intrinsic)} | "
            f"{_fmt(row.gas_used - row.intrinsic)} |"
        )
    via, eoa = rows["request_consumer_plain32"], rows["request_eoa_plain32"]
    lines += [
        "",
        f"ExampleConsumer's own share of a 32-byte request (consumer path minus EOA path, same calldata "
        f"size): {_fmt(via.gas_used - eoa.gas_used)} gas.",
        "",
    ]

    lines += [
        "#### Fulfilment (`Router.fulfill`), ExampleConsumer callback, no fee unless stated",
        "",
        "| operation | gas used | intrinsic (21,000 + calldata) | callback (consumer code, callTracer) "
        "| overhead (gas used - callback) | router execution (overhead - intrinsic) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key in (
        "fulfill_credit_score",
        "fulfill_credit_score_fee",
        "fulfill_credit_score_simulated",
        "fulfill_echo256",
    ):
        row = rows[key]
        overhead = row.overhead
        lines.append(
            f"| {row.label} | {_fmt(row.gas_used)} | {_fmt(row.intrinsic)} | {_fmt(row.callback)} | "
            f"{_fmt(overhead)} | {_fmt(None if overhead is None else overhead - row.intrinsic)} |"
        )
    replay = rows["fulfill_replay"]
    traced = replay.med("traced_execution")
    lines += [
        "",
        "| replayed `fulfill` (request already settled) | gas used | intrinsic (21,000 + calldata) | "
        "execution (step trace) | intrinsic + execution | EIP-7623 calldata floor |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {replay.label} | {_fmt(replay.gas_used)} | {_fmt(replay.intrinsic)} | {_fmt(traced)} | "
        f"{_fmt(None if traced is None else replay.intrinsic + traced)} | {_fmt(replay.med('calldata_floor'))} |",
        "",
    ]

    lines += [
        "#### Batch (`Router.fulfillBatch`), credit-score answers, per item",
        "",
        "| items | total gas used | per item: gas used | per item: intrinsic | per item: callback | "
        "per item: overhead (gas used - callback) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n in BATCH_SIZES:
        row = rows[f"fulfill_batch_{n}"]
        callback, overhead = row.callback or 0, row.overhead or 0
        lines.append(
            f"| {n} | {_fmt(row.gas_used)} | {_fmt(row.gas_used / n)} | {_fmt(row.intrinsic / n)} | "
            f"{_fmt(callback / n)} | {_fmt(overhead / n)} |"
        )
    return "\n".join(lines)


def trivial_markdown(summary: dict[str, int], rows: dict[str, Row]) -> str:
    """The TrivialConsumer case (issue 6's comparison callback) as a Markdown table."""
    eoa = rows["request_eoa_plain64"]
    return "\n".join(
        [
            "#### Trivial callback (TrivialConsumer: one 32-byte store to a fresh slot), 64-byte input",
            "",
            "| figure | gas |",
            "|---|---:|",
            f"| request (`TrivialConsumer.send` -> `Router.request`) | {_fmt(summary['request'])} |",
            f"| request from an EOA (`Router.request`) | {_fmt(eoa.gas_used)} |",
            f"| fulfill (`fulfillPacked`, what the relayer sends for one result) | {_fmt(summary['fulfill'])} |",
            f"| fulfill overhead (gas used - consumer code) | {_fmt(summary['fulfill_overhead'])} |",
            f"| `fulfill` (the ABI-encoded struct) | {_fmt(rows['fulfill_trivial'].gas_used)} |",
            f"| fulfillBatchSigned of 10, per item | {_fmt(summary['batch10_per_item'])} |",
            f"| fulfillBatchSigned of 10, overhead per item | {_fmt(summary['batch10_overhead_per_item'])} |",
            f"| fulfillBatchSigned of 50, per item | {_fmt(summary['batch50_per_item'])} |",
            f"| fulfillBatchSigned of 50, overhead per item | {_fmt(summary['batch50_overhead_per_item'])} |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gas", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh transactions per figure (median reported)")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not write bench/results/gas-detail.json or gas.json"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the peers (their entries in gas.json are null)")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f"  - {message}", file=sys.stderr, flush=True)

    with Anvil(extra_args=ANVIL_ARGS) as anvil:
        env = environment(anvil.rpc_url)
        env["anvilArgs"] = list(ANVIL_ARGS)
        say(f"{env['anvil']}, hardfork {env['hardfork']}, solc {env['solc']}")
        bench = GasBench(Chain.deploy(anvil.rpc_url), args.repeats, say)
        bench.run()
        teebridge = bench.teebridge_summary()
        if args.no_peers:
            peer_figures, peer_notes, peer_versions = {}, {s: "not run (--no-peers)" for s in SYSTEMS[1:]}, {}
        else:
            peer_figures, peer_notes, peer_versions = peers.measure_all(anvil.rpc_url, say)
    table = markdown(bench.rows) + "\n\n" + trivial_markdown(teebridge, bench.rows)
    print(table)
    print()
    print(peers.markdown(teebridge, peer_figures, peer_notes))
    summary = gas_document(
        {"teebridge": teebridge, **peer_figures},
        versions={
            "anvil": env["anvil"],
            "hardfork": env["hardfork"],
            "solc": env["solc"],
            "python": env["python"],
            **peer_versions,
        },
        notes={
            "teebridge": "TrivialConsumer (contracts/test/TrivialConsumer.sol), 64-byte plain input, 32-byte "
            "result, non-simulated signer; fulfill is Router.fulfillPacked, the call the relayer sends for one "
            "result (Router.fulfill, the ABI-encoded form, is in gas-detail.json); medians of fresh transactions; "
            "details in gas-detail.json",
            **peer_notes,
        },
        extra={"definitions": peers.DEFINITIONS, "environment": env},
    )
    if not args.no_write:
        doc = {
            "environment": env,
            "settings": {
                "callbackGasLimit": CALLBACK_GAS_LIMIT,
                "ttl": TTL,
                "fee": FEE,
                "repeats": args.repeats,
                "consumer": "ExampleConsumer (TrivialConsumer for the *_trivial* rows)",
                "signer": "registered as non-simulated unless stated",
                "creditScoreResult": "0x" + CREDIT_SCORE_RESULT.hex(),
            },
            "definitions": {
                "gasUsed": "receipt gasUsed (net of refunds, at least the EIP-7623 floor), median of the samples",
                "intrinsic": "21000 + 4 per zero calldata byte + 16 per non-zero calldata byte (EIP-2028)",
                "execution": "gasUsed - intrinsic",
                "calldataFloor": "EIP-7623 floor: 21000 + 10 per calldata token (zero byte 1 token, non-zero 4)",
                "tracedExecutionBeforeRefunds": "top-level execution gas from the step trace, before refunds",
                "consumerCodeGasUsed": "gasUsed of the consumer's call frames (callTracer), without the CALL cost",
                "overhead": "gasUsed - consumerCodeGasUsed (intrinsic and the CALL included)",
                "routerExecution": "overhead - intrinsic",
            },
            "results": {key: row.to_json() for key, row in bench.rows.items()},
            "markdown": table,
        }
        say(f"wrote {write_json('gas-detail.json', doc)}")
        say(f"wrote {write_json('gas.json', summary)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
