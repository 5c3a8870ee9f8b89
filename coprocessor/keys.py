"""The enclave's keys: a secp256k1 signing key and one HPKE key per suite, generated inside and sealed.

At first start a key set is generated from the enclave's randomness and sealed to ``data_dir/keys.sealed``
(mode 0600); every later start unseals the same keys, so the signer address and the HPKE key bundle that
were attested and registered stay valid across restarts.

Rotation (docs/confidentiality.md, "Key rotation"): :meth:`EnclaveKeys.begin_rotation` makes a *pending*
key set, which is attested and registered while the current one keeps working; :meth:`complete_rotation`
makes it current, destroys the old signing key at once and keeps the old HPKE keys, for decryption only,
until ``retire_at`` (the old registration's expiry). After that they are destroyed, and an input sealed to
them gets the signed status UNKNOWN_KEY. Every change is sealed to disk before it takes effect.

Key bytes never leave this module: the executor gets HPKE private keys only through :meth:`lookup`.
:func:`open_sealer` picks the sealer a config names (``simulated`` or ``dstack``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from coincurve import PrivateKey

from coprocessor.attestation.base import TeeLocations
from coprocessor.attestation.dstack import DstackAgent
from coprocessor.sealing import (
    DstackSealer,
    Sealer,
    SealingError,
    SimulatedSealer,
    ensure_private_dir,
    is_private,
    write_new_private_file,
)
from verifier.signing import address_of_private_key, sign_digest
from verifier.suites import HpkeKeyPair, Suite, encode_key_bundle

log = logging.getLogger(__name__)

KEYS_FILE = "keys.sealed"
KEYS_PURPOSE = b"teebridge/v1/enclave-keys"
KEYS_FORMAT = 2
SIGNING_KEY_LENGTH = 32
HPKE_KEY_LENGTH = 32
LEGACY_KEYS_LENGTH = SIGNING_KEY_LENGTH + HPKE_KEY_LENGTH
ALL_SUITES: tuple[Suite, ...] = tuple(Suite)
MAX_RETIREMENT_SECONDS = 90 * 24 * 3600
#: How many of its latest digests a key set remembers having signed (about 2 minutes at 1,000 a second; 32-byte
#: digests, some 10 MB). ``/v1/sign-batch`` finds its items here instead of recovering each item's signature.
SIGNED_MEMO_SIZE = 131_072
"""Longest an old HPKE key is kept after a rotation, whatever ``retire_at`` asks for."""


class RotationError(ValueError):
    """A rotation step that does not fit the current state (no pending keys, another pending signer)."""


class KeySet:
    """One generation of enclave keys: a signing key and one HPKE key pair per suite.

    ``repr`` and ``str`` show only public values; pickling is refused.
    """

    __slots__ = ("_memo_lock", "_signed", "_signed_order", "_signing_key", "hpke", "signer_address")

    def __init__(self, signing_key: bytes, hpke: dict[Suite, HpkeKeyPair]) -> None:
        if len(signing_key) != SIGNING_KEY_LENGTH:
            raise ValueError("a secp256k1 signing key is 32 bytes")
        if not hpke:
            raise ValueError("a key set holds at least one HPKE key")
        self._signing_key = signing_key
        self.hpke: dict[Suite, HpkeKeyPair] = dict(sorted(hpke.items()))
        """The HPKE key pair of each suite this key set accepts."""
        self.signer_address: str = address_of_private_key(signing_key)
        """Checksummed Ethereum address of the signing key."""
        self._signed: set[bytes] = set()
        self._signed_order: deque[bytes] = deque()
        self._memo_lock = threading.Lock()

    @classmethod
    def generate(cls, suites: Iterable[Suite] = ALL_SUITES) -> KeySet:
        """Fresh keys from the OS randomness (inside the enclave)."""
        while True:
            candidate = os.urandom(SIGNING_KEY_LENGTH)
            try:
                PrivateKey(candidate)  # rejects 0 and values >= the curve order
            except ValueError:
                continue
            return cls(candidate, {suite: HpkeKeyPair.generate(suite) for suite in suites})

    @property
    def key_bundle(self) -> bytes:
        """``suite || publicKey`` for each suite: what report_data binds and the registry stores."""
        return encode_key_bundle({suite: pair.public_key for suite, pair in self.hpke.items()})

    def sign(self, digest: bytes) -> bytes:
        """A 65-byte ``r || s || v`` low-s signature over a 32-byte digest (remembered: :meth:`signed_recently`)."""
        signature = sign_digest(self._signing_key, digest)
        with self._memo_lock:
            if digest not in self._signed:
                self._signed.add(digest)
                self._signed_order.append(digest)
                if len(self._signed_order) > SIGNED_MEMO_SIZE:
                    self._signed.discard(self._signed_order.popleft())
        return signature

    def signed_recently(self, digest: bytes) -> bool:
        """Whether this key set signed ``digest`` among its last :data:`SIGNED_MEMO_SIZE` signatures.

        True proves what recovering this key's address from a signature over ``digest`` would, at no ECDSA cost;
        False proves nothing (the digest may be older): recover then.
        """
        with self._memo_lock:
            return digest in self._signed

    def to_json(self) -> dict[str, object]:
        """The secret serialisation (only ever sealed)."""
        return {
            "signingKey": self._signing_key.hex(),
            "hpke": {str(int(suite)): pair.to_bytes().hex() for suite, pair in self.hpke.items()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> KeySet:
        """Inverse of :meth:`to_json`."""
        hpke = doc["hpke"]
        if not isinstance(hpke, dict):
            raise ValueError("hpke must be an object")
        pairs = {Suite(int(s)): HpkeKeyPair(Suite(int(s)), bytes.fromhex(str(k))) for s, k in hpke.items()}
        return cls(bytes.fromhex(str(doc["signingKey"])), pairs)

    def __repr__(self) -> str:
        ids = ", ".join(f"{s.label}=0x{p.key_id.hex()}" for s, p in self.hpke.items())
        return f"KeySet(signer={self.signer_address}, {ids})"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("key sets cannot be pickled: key material stays in the enclave")


@dataclass(frozen=True, slots=True)
class RetiredKey:
    """An HPKE key kept after a rotation for decryption only, until ``retire_at`` (unix seconds)."""

    pair: HpkeKeyPair
    retire_at: int


class EnclaveKeys:
    """The enclave's key ring: the current key set, a pending one during rotation, and retired HPKE keys.

    With a ``path`` and a ``sealer`` every change is sealed to ``path`` (atomically) before it takes effect.
    Thread-safe. ``repr`` shows only public values; pickling is refused.
    """

    def __init__(
        self,
        current: KeySet,
        *,
        pending: KeySet | None = None,
        retired: Iterable[RetiredKey] = (),
        path: Path | None = None,
        sealer: Sealer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._current = current
        self._pending = pending
        self._retired = list(retired)
        self._path = path
        self._sealer = sealer
        self._clock = clock
        self._lock = threading.RLock()

    @classmethod
    def generate(cls, suites: Iterable[Suite] = ALL_SUITES) -> EnclaveKeys:
        """A key ring with one freshly generated key set and nowhere to persist it."""
        return cls(KeySet.generate(suites))

    # ---------------------------------------------------------------- the current keys

    @property
    def current(self) -> KeySet:
        """The key set that signs and whose HPKE keys are registered."""
        with self._lock:
            return self._current

    @property
    def pending(self) -> KeySet | None:
        """The key set a rotation has made but not yet put into use."""
        with self._lock:
            return self._pending

    @property
    def signer_address(self) -> str:
        """The current signer's checksummed address."""
        return self.current.signer_address

    @property
    def hpke_keys(self) -> bytes:
        """The current key bundle (``suite || publicKey`` per suite)."""
        return self.current.key_bundle

    @property
    def suites(self) -> tuple[Suite, ...]:
        """The suites the current key set accepts."""
        return tuple(self.current.hpke)

    def public_key(self, suite: Suite = Suite.X25519) -> bytes:
        """The current raw HPKE public key of ``suite``; ``KeyError`` if this enclave does not accept it."""
        return self.current.hpke[suite].public_key

    def sign(self, digest: bytes) -> bytes:
        """Sign with the current signing key (a 65-byte ``r || s || v`` low-s signature)."""
        return self.current.sign(digest)

    def lookup(self, suite: Suite, key_id: bytes) -> HpkeKeyPair | None:
        """The HPKE private key with this suite and id: current, or retired and not yet past ``retire_at``.

        A retired key found past its time is destroyed here (and the change sealed).
        """
        with self._lock:
            pair = self._current.hpke.get(suite)
            if pair is not None and pair.key_id == key_id:
                return pair
            self._purge_locked()
            for retired in self._retired:
                if retired.pair.suite is suite and retired.pair.key_id == key_id:
                    return retired.pair
            return None

    @property
    def retired(self) -> tuple[RetiredKey, ...]:
        """HPKE keys kept for decryption after a rotation (past-due ones destroyed first)."""
        with self._lock:
            self._purge_locked()
            return tuple(self._retired)

    # ---------------------------------------------------------------- rotation

    def begin_rotation(self) -> KeySet:
        """Make (or return the existing) pending key set; the current keys stay in use."""
        with self._lock:
            if self._pending is None:
                pending = KeySet.generate(self._current.hpke)
                self._save(self._current, pending, self._retired)
                self._pending = pending
                log.info("rotation started: pending signer %s", pending.signer_address)
            return self._pending

    def complete_rotation(self, signer: str, retire_at: int) -> KeySet:
        """Make the pending key set (whose signer must be ``signer``) current.

        The old signing key is destroyed; the old HPKE keys are kept for decryption until ``retire_at``
        (capped at :data:`MAX_RETIREMENT_SECONDS` from now; a time in the past destroys them at once).
        """
        with self._lock:
            if self._pending is None:
                raise RotationError("no rotation in progress: start one first (POST /v1/keys/rotate)")
            if self._pending.signer_address.lower() != signer.lower():
                raise RotationError(
                    f"the pending signer is {self._pending.signer_address}, not {signer}: activate the signer "
                    "the rotation returned"
                )
            now = int(self._clock())
            until = min(int(retire_at), now + MAX_RETIREMENT_SECONDS)
            kept = [RetiredKey(pair, until) for pair in self._current.hpke.values()] if until > now else []
            retired = [*self._retired, *kept]
            new_current = self._pending
            self._save(new_current, None, retired)
            old = self._current
            self._current, self._pending, self._retired = new_current, None, retired
            self._purge_locked()
            log.info(
                "rotation complete: signer %s replaces %s; old HPKE keys kept until %d",
                new_current.signer_address,
                old.signer_address,
                until,
            )
            return new_current

    def purge(self) -> int:
        """Destroy retired keys past their time; returns how many were destroyed."""
        with self._lock:
            return self._purge_locked()

    def _purge_locked(self) -> int:
        now = int(self._clock())
        keep = [r for r in self._retired if r.retire_at > now]
        dropped = len(self._retired) - len(keep)
        if dropped:
            self._save(self._current, self._pending, keep)
            self._retired = keep
            log.info("destroyed %d retired HPKE key(s) past their retirement time", dropped)
        return dropped

    # ---------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """The secret serialisation that is sealed (JSON, format 2)."""
        with self._lock:
            return _serialise(self._current, self._pending, self._retired)

    @classmethod
    def from_bytes(cls, data: bytes, **kwargs: object) -> EnclaveKeys:
        """Inverse of :meth:`to_bytes`; also reads the first format (64 bytes: signing key, X25519 key)."""
        if len(data) == LEGACY_KEYS_LENGTH:
            pair = HpkeKeyPair(Suite.X25519, data[SIGNING_KEY_LENGTH:])
            return cls(KeySet(data[:SIGNING_KEY_LENGTH], {Suite.X25519: pair}), **kwargs)  # type: ignore[arg-type]
        try:
            doc = json.loads(data)
            if doc.get("format") != KEYS_FORMAT:
                raise ValueError(f"unknown key file format {doc.get('format')!r}")
            current = KeySet.from_json(doc["current"])
            pending = KeySet.from_json(doc["pending"]) if doc.get("pending") else None
            retired = [
                RetiredKey(HpkeKeyPair(Suite(int(r["suite"])), bytes.fromhex(r["secret"])), int(r["retireAt"]))
                for r in doc.get("retired", [])
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"sealed key material is malformed: {exc}") from None
        return cls(current, pending=pending, retired=retired, **kwargs)  # type: ignore[arg-type]

    def _save(self, current: KeySet, pending: KeySet | None, retired: list[RetiredKey]) -> None:
        if self._path is None or self._sealer is None:
            return
        sealed = self._sealer.seal(_serialise(current, pending, retired), KEYS_PURPOSE)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        write_new_private_file(tmp, sealed)
        os.replace(tmp, self._path)

    def __repr__(self) -> str:
        return f"EnclaveKeys(current={self._current!r}, pending={self._pending!r}, retired={len(self._retired)})"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("EnclaveKeys cannot be pickled: key material stays in the enclave")


def _serialise(current: KeySet, pending: KeySet | None, retired: list[RetiredKey]) -> bytes:
    doc = {
        "format": KEYS_FORMAT,
        "current": current.to_json(),
        "pending": pending.to_json() if pending is not None else None,
        "retired": [
            {"suite": int(r.pair.suite), "secret": r.pair.to_bytes().hex(), "retireAt": r.retire_at} for r in retired
        ],
    }
    return json.dumps(doc, sort_keys=True).encode()


def open_sealer(sealing: str, data_dir: Path, *, dstack_socket: Path | None = None) -> Sealer:
    """The sealer for ``data_dir`` that the ``sealing`` setting names.

    ``simulated``: :class:`SimulatedSealer` over ``data_dir/seal-root.key`` (created only while there are no
    sealed keys yet). ``dstack``: :class:`DstackSealer` with its root from the guest agent's ``GetKey`` on
    ``dstack_socket``, or on the first standard socket path that exists when it is None. Raises
    ``SealingError`` when the root cannot be had, ``ValueError`` for another name.
    """
    if sealing == "simulated":
        return SimulatedSealer.open(data_dir, create=not (data_dir / KEYS_FILE).exists())
    if sealing == "dstack":
        where = TeeLocations() if dstack_socket is None else TeeLocations(dstack_sockets=(dstack_socket,))
        socket = where.dstack_socket()
        if socket is None:
            raise SealingError(
                "sealing 'dstack' needs the dstack guest agent, but no socket exists at "
                + ", ".join(str(p) for p in where.dstack_sockets)
            )
        return DstackSealer.from_kms(DstackAgent(socket).get_key)
    raise ValueError(f"unknown sealing {sealing!r}; known: simulated, dstack")


def load_or_create_keys(data_dir: Path, sealer: Sealer | None = None) -> EnclaveKeys:
    """Unseal ``data_dir/keys.sealed``, or on first start generate keys and seal them there.

    ``sealer`` defaults to :class:`SimulatedSealer` over ``data_dir``. Raises ``SealingError`` naming the
    file if it exists but does not unseal (tampered, truncated or sealed under another root).
    """
    path = data_dir / KEYS_FILE
    if sealer is None:
        sealer = SimulatedSealer.open(data_dir, create=not path.exists())
    ensure_private_dir(data_dir)
    if not path.exists():
        keys = EnclaveKeys(KeySet.generate(), path=path, sealer=sealer)
        if write_new_private_file(path, sealer.seal(keys.to_bytes(), KEYS_PURPOSE)):
            log.info("generated new enclave keys: signer %s, sealed to %s", keys.signer_address, path)
            return keys
        # Another process created the file first: fall through and use its keys.
    keys = _unseal(path, sealer)
    keys.purge()
    log.info("unsealed enclave keys: signer %s from %s", keys.signer_address, path)
    return keys


def _unseal(path: Path, sealer: Sealer) -> EnclaveKeys:
    if not is_private(path):
        log.warning("%s is readable by group or others; it should be mode 0600", path)
    try:
        return EnclaveKeys.from_bytes(sealer.unseal(path.read_bytes(), KEYS_PURPOSE), path=path, sealer=sealer)
    except SealingError as exc:
        raise SealingError(f"cannot unseal {path}: {exc}") from exc
    except ValueError as exc:
        raise SealingError(f"cannot unseal {path}: {exc}") from exc
