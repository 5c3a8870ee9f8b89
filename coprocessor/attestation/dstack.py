"""dstack CVMs: TDX quotes and KMS-derived keys from the dstack guest agent, over its Unix socket.

The guest agent serves prpc over HTTP on a Unix socket: a method is ``POST /<Method>`` with a JSON body
whose ``bytes`` fields are hex strings (no ``0x``), and it answers JSON (``{"error": "..."}`` with HTTP 400 or
500 on failure). This module speaks it with ``httpx`` directly instead of the ``dstack-sdk`` package, which
would bring pydantic into the trusted computing base. Two flavours exist:

- the current agent, ``/var/run/dstack.sock`` (service ``DstackGuest``, methods at ``/<Method>``):
  ``GetQuote {"report_data": hex}`` -> ``{"quote": hex, "event_log": "<JSON text>", "report_data": hex,
  "vm_config": "..."}`` (the agent zero-pads report data to 64 bytes and echoes it), and
  ``GetKey {"path", "purpose", "algorithm"}`` -> ``{"key": hex, "signature_chain": [hex, ...]}``, where the
  32-byte key is derived from the app's KMS key and ``path`` only (``purpose`` goes into the signature
  chain, ``algorithm`` only says how to read the same bytes), so it is the same on every start of the app;
- the legacy ``tappd`` agent, ``/var/run/tappd.sock`` (service ``Tappd``, methods at ``/prpc/Tappd.<Method>``):
  ``TdxQuote {"report_data": hex, "hash_algorithm": "raw"}`` -> ``{"quote", "event_log", "hash_algorithm",
  "prefix"}`` (``raw`` passes the 64 bytes through unhashed; other algorithms would hash them with a prefix),
  and ``DeriveK256Key {"path", "purpose"}`` -> ``{"k256_key": hex, "k256_signature_chain": [...]}``.

A socket whose file name is ``tappd.sock`` is spoken to with the legacy API, any other with the current one.

Sources (repository Dstack-TEE/dstack):

- ``guest-agent/rpc/proto/agent_rpc.proto``: services ``DstackGuest`` and ``Tappd``; messages ``RawQuoteArgs``,
  ``GetQuoteResponse``, ``GetKeyArgs``, ``GetKeyResponse``, ``TdxQuoteArgs``, ``TdxQuoteResponse``,
  ``DeriveK256KeyResponse``;
- ``guest-agent/src/rpc_service.rs``: ``get_quote`` pads report data to 64 bytes, ``get_key`` derives from
  the app key and ``path``; the Tappd service's ``tdx_quote`` (``raw`` skips the hashing) and
  ``derive_k256_key``;
- ``guest-agent/src/server.rs``: DstackGuest mounted at ``/``, Tappd at ``/prpc/`` with the ``Tappd.`` prefix;
- ``sdk/curl/api.md`` and ``sdk/curl/api-tappd.md``: request and response shapes, errors;
- ``sdk/python/src/dstack_sdk/dstack_client.py``: socket search order, ``POST`` with a JSON body, an
  ``http://localhost`` base URL over the socket; its legacy client also sends ``TdxQuote`` with
  ``hash_algorithm: "raw"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from coprocessor.attestation.base import (
    AttestationUnavailableError,
    Measure,
    QuoteError,
    check_report_data,
    measure_at_start,
    quote_hex,
)

LEGACY_SOCKET_NAME = "tappd.sock"
DEFAULT_TIMEOUT_SECONDS = 30.0
"""Generous: the first quote of a boot goes through the host's quote generation service."""
KEY_LENGTH = 32


class DstackError(QuoteError):
    """The dstack guest agent could not be reached, refused a request or answered something unusable."""


@dataclass(frozen=True, slots=True)
class DstackQuote:
    """A TDX quote from the guest agent with the event log it returned (JSON text, kept byte for byte)."""

    quote: bytes
    event_log: str


class DstackAgent:
    """A client for the dstack guest agent on the Unix socket ``socket`` (see the module docstring)."""

    def __init__(self, socket: Path, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.socket = Path(socket)
        self.legacy = self.socket.name == LEGACY_SOCKET_NAME
        """True for the legacy ``tappd`` API."""
        self._timeout = timeout

    def get_quote(self, report_data: bytes) -> DstackQuote:
        """A TDX quote over exactly ``report_data`` (64 bytes), checked against what the agent echoes."""
        data = check_report_data(report_data)
        if self.legacy:
            doc = self._call("TdxQuote", {"report_data": data.hex(), "hash_algorithm": "raw"})
            algorithm = doc.get("hash_algorithm")
            if algorithm not in (None, "", "raw"):
                raise DstackError(f"tappd hashed the report data with {algorithm!r} instead of passing it raw")
        else:
            doc = self._call("GetQuote", {"report_data": data.hex()})
            echoed = doc.get("report_data")  # agents older than GetQuoteResponse.report_data do not echo it
            if echoed and _from_hex(echoed, "report_data") != data:
                raise DstackError("the guest agent quoted other report data than the 64 bytes sent")
        quote = _from_hex(doc.get("quote"), "quote")
        if not quote:
            raise DstackError(f"the guest agent at {self.socket} returned an empty quote")
        event_log = doc.get("event_log", "")
        if not isinstance(event_log, str):
            raise DstackError("the guest agent's event_log is not a string")
        return DstackQuote(quote, event_log)

    def get_key(self, path: str, purpose: str = "") -> bytes:
        """The 32-byte key the KMS derives for this app and ``path`` (the same on every start of the app).

        The key is returned, never logged; errors do not contain it.
        """
        if self.legacy:
            doc = self._call("DeriveK256Key", {"path": path, "purpose": purpose})
            field = "k256_key"
        else:
            doc = self._call("GetKey", {"path": path, "purpose": purpose, "algorithm": "secp256k1"})
            field = "key"
        key = _from_hex(doc.get(field), field)
        if len(key) != KEY_LENGTH:
            raise DstackError(f"the guest agent returned a {len(key)}-byte key, expected {KEY_LENGTH}")
        return key

    def _call(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"/prpc/Tappd.{method}" if self.legacy else f"/{method}"
        try:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            with httpx.Client(
                transport=transport, base_url="http://localhost", timeout=self._timeout, trust_env=False
            ) as client:
                response = client.post(url, json=payload)
        except httpx.HTTPError as exc:
            raise DstackError(f"cannot reach the dstack guest agent at {self.socket}: {exc}") from exc
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if response.status_code != 200:
            detail = doc.get("error") if isinstance(doc, dict) else response.text
            raise DstackError(f"dstack guest agent {url} answered HTTP {response.status_code}: {str(detail)[:300]}")
        if not isinstance(doc, dict):
            raise DstackError(f"dstack guest agent {url} did not answer a JSON object")
        return doc


class DstackQuoteProvider:
    """TDX quotes from a dstack guest agent; evidence carries the agent's event log for RTMR replay."""

    kind = "dstack"
    insecure = False
    warning: str | None = None

    def __init__(self, socket: Path, measure: Measure, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        """Check the socket exists, then take one quote over zero report data and measure it."""
        if not Path(socket).exists():
            raise AttestationUnavailableError(
                f"dstack guest agent socket {socket} not found: not in a dstack CVM, or the socket is not "
                "mounted into this container (volumes: /var/run/dstack.sock:/var/run/dstack.sock)"
            )
        self.agent = DstackAgent(socket, timeout=timeout)
        self._measurement = measure_at_start("dstack", lambda data: self.agent.get_quote(data).quote, measure)

    def measurement(self) -> bytes:
        """The measurement computed at start from a quote over zero report data."""
        return self._measurement

    def quote(self, report_data: bytes) -> dict[str, Any]:
        """``{"kind": "tdx", "insecure": false, "quote": "0x...", "eventLog": <as returned>, "source": "dstack"}``."""
        got = self.agent.get_quote(report_data)
        return {
            "kind": "tdx",
            "insecure": self.insecure,
            "quote": quote_hex(got.quote),
            "eventLog": got.event_log,
            "source": "dstack",
        }


def _from_hex(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise DstackError(f"the guest agent's {field} is missing or not a string")
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise DstackError(f"the guest agent's {field} is not hex") from exc
