"""The relayer's Prometheus metrics, rendered in the text exposition format (version 0.0.4) without dependencies.

``prometheus-client`` is not a dependency of teebridge, so this module implements the three metric types the
relayer needs (counter, gauge, histogram, each with optional labels) and their text rendering. Every update
and the rendering take one lock, so the tick thread may update while the health server renders.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request-to-delivery latency buckets, in seconds (a block time is 2 to 12 s on most chains).
LATENCY_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format(value: float) -> str:
    if isinstance(value, int):  # exact, however large (wei amounts exceed a float's 53-bit mantissa)
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: tuple[str, str] | None = None) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra is not None:
        pairs.append(f'{extra[0]}="{_escape(extra[1])}"')
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = "untyped"

    def __init__(self, registry: Registry, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = registry.lock
        registry.register(self)

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def samples(self) -> Iterable[str]:  # pragma: no cover - overridden
        return ()

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}", *self.samples()]


class Counter(_Metric):
    """A monotonically increasing value (one per label combination)."""

    kind = "counter"

    def __init__(self, registry: Registry, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(registry, name, help_text, labelnames)
        self._values: dict[LabelValues, float] = {} if labelnames else {(): 0}

    def inc(self, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` (never negative)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: str) -> float:
        """The current value (0 for a label combination never seen)."""
        with self._lock:
            return self._values.get(self._key(labels), 0)

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {_format(value)}"


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def __init__(self, registry: Registry, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(registry, name, help_text, labelnames)
        self._values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: str) -> None:
        """Set the value (an int is kept exact)."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = value

    def replace(self, values: dict[str, float]) -> None:
        """Set a one-label gauge to exactly ``values`` (label value -> value); other label values are dropped."""
        if len(self.labelnames) != 1:
            raise ValueError(f"{self.name} does not have exactly one label")
        with self._lock:
            self._values = {(str(k),): v for k, v in values.items()}

    def value(self, **labels: str) -> float | None:
        """The current value, or None if never set."""
        with self._lock:
            return self._values.get(self._key(labels))

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.labelnames, key)} {_format(value)}"


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count (no labels)."""

    kind = "histogram"

    def __init__(self, registry: Registry, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(registry, name, help_text)
        self.buckets = (*sorted(float(b) for b in buckets), math.inf)
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        with self._lock:
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        """How many observations were recorded."""
        with self._lock:
            return self._count

    def samples(self) -> Iterable[str]:
        for bound, n in zip(self.buckets, self._counts, strict=True):
            yield f'{self.name}_bucket{{le="{_format(bound)}"}} {n}'
        yield f"{self.name}_sum {_format(self._sum)}"
        yield f"{self.name}_count {self._count}"


class Registry:
    """An ordered set of metrics that renders as one exposition."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._metrics: list[_Metric] = []

    def register(self, metric: _Metric) -> None:
        """Add ``metric``; its name must be new."""
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"duplicate metric {metric.name}")
        self._metrics.append(metric)

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        with self.lock:
            lines = [line for metric in self._metrics for line in metric.render()]
        return "\n".join(lines) + "\n"


class RelayerMetrics:
    """Every metric the relayer exports, named ``teebridge_relayer_*``."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        p = "teebridge_relayer_"
        self.requests_seen = Counter(r, p + "requests_seen_total", "Requested logs newly stored by this process.")
        self.requests = Gauge(r, p + "requests", "Requests in the store, by state.", ["state"])
        self.requests_finished = Counter(
            r, p + "requests_finished_total", "Requests this process moved to a final state, by state.", ["state"]
        )
        self.delivered = Counter(
            r, p + "fulfilments_delivered_total", "Fulfilments the Router accepted from this relayer."
        )
        self.failed = Counter(r, p + "fulfilments_failed_total", "Requests closed as failed, by reason.", ["reason"])
        self.submissions = Counter(
            r,
            p + "submissions_total",
            "Fulfilment transactions settled, by outcome (mined, reverted, dropped, replaced).",
            ["outcome"],
        )
        self.gas_used = Counter(r, p + "gas_used_total", "Gas used by mined transactions, by kind.", ["kind"])
        self.gas_cost = Counter(
            r, p + "gas_cost_wei_total", "Wei paid for gas by mined transactions (gasUsed x price), by kind.", ["kind"]
        )
        self.latency = Histogram(
            r, p + "delivery_latency_seconds", "Seconds from a request being seen to its delivery.", LATENCY_BUCKETS
        )
        self.balance = Gauge(r, p + "balance_wei", "Balance of each relayer account, in wei.", ["account"])
        self.account_pending = Gauge(
            r, p + "account_pending_transactions", "Open (unmined) transaction nonces of each account.", ["account"]
        )
        self.account_nonce = Gauge(r, p + "account_next_nonce", "The nonce each account signs next.", ["account"])
        self.ticks = Counter(r, p + "ticks_total", "Passes of the relayer loop.")
        self.tick_errors = Counter(
            r, p + "tick_errors_total", "Failed stages of the relayer loop, by stage.", ["stage"]
        )
        self.stage_seconds = Counter(
            r, p + "stage_seconds_total", "Wall-clock seconds spent in each stage of the loops, by stage.", ["stage"]
        )
        self.last_tick = Gauge(r, p + "last_tick_timestamp_seconds", "Unix time the last pass ended.")
        self.last_success = Gauge(
            r, p + "last_successful_tick_timestamp_seconds", "Unix time the last pass without errors ended."
        )
        self.cancels = Counter(
            r,
            p + "cancels_total",
            "Auto-cancel attempts, by outcome (cancelled, not_pending, reverted, failed).",
            ["outcome"],
        )
        self.coprocessor_up = Gauge(r, p + "coprocessor_up", "1 if the coprocessor answered its last health probe.")
        self.pool_members = Gauge(r, p + "coprocessor_pool_members", "Coprocessors in the pool, by origin.", ["origin"])
        self.discovery_changes = Counter(
            r,
            p + "coprocessor_discovery_changes_total",
            "Discovered coprocessors added to or removed from the pool.",
            ["change"],
        )
        self.discovery_refused = Gauge(
            r, p + "coprocessor_discovery_refused", "Endpoints of live signers left out (wrong key, unreachable)."
        )
        self.reexecutions = Counter(
            r,
            p + "reexecutions_total",
            "Results discarded and their requests executed again, by why: the registry no longer holds their signer"
            " live (revoked, expired, ...), or their own signature did not check out (bad_signature).",
            ["reason"],
        )

    def render(self) -> str:
        """The exposition served on ``/metrics``."""
        return self.registry.render()
