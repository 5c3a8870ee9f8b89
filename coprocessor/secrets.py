"""The enclave's store of job owners' secret sets: kept only sealed, handed only to the job they are for.

One file per secret set, ``data_dir/secrets/<secretSetId>.sealed``, sealed with the enclave's sealer (purpose
bound to the id), holding the owner, chain, job, version, expiry, allowed requesters and the values (or a
tombstone after a deletion). An upload is accepted only if its signature is the owner's, its ciphertext opens
under one of this enclave's HPKE keys with the owner-bound ``info``, and its version is above the stored one.

The values leave this module only through :meth:`SecretStore.resolve`, for a request whose chain and job
match the set and whose requester is the owner or one of the set's requesters. No method logs a value and
no error message quotes one. What this store cannot stop (docs/confidentiality.md): an operator who puts
an older sealed file back (a rollback to a previous version), short of a TEE monotonic counter.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from coprocessor.keys import EnclaveKeys
from coprocessor.sealing import Sealer, SealingError, ensure_private_dir, write_new_private_file
from verifier.envelope import EnvelopeError, parse_input
from verifier.secrets import (
    SecretSetDeletion,
    SecretSetError,
    SecretSetUpload,
    check_secret_values,
    secrets_info,
)
from verifier.suites import DecryptionError

log = logging.getLogger(__name__)

SECRETS_DIR = "secrets"
SECRETS_PURPOSE = b"teebridge/v1/secret-set/"
MAX_CIPHERTEXT_BYTES = 16384
EMPTY_SECRETS: Mapping[str, str] = MappingProxyType({})


class SecretUnavailableError(LookupError):
    """A request names a secret set it may not use (missing, deleted, expired, other job, chain or requester).

    The message is safe to publish on-chain (status SECRET_UNAVAILABLE): it names no value.
    """


@dataclass(frozen=True, slots=True)
class SecretSetInfo:
    """What may be said about a stored secret set (no names of values, no values)."""

    secret_set_id: bytes
    version: int
    expires_at: int
    deleted: bool

    def to_json(self) -> dict[str, object]:
        """The JSON the secrets endpoints return."""
        return {
            "secretSetId": "0x" + self.secret_set_id.hex(),
            "version": self.version,
            "expiresAt": self.expires_at,
            "deleted": self.deleted,
        }


class SecretStore:
    """Sealed secret sets under ``data_dir/secrets``. Thread-safe."""

    def __init__(self, data_dir: Path, sealer: Sealer, keys: EnclaveKeys, clock: Callable[[], float] = time.time):
        self._dir = data_dir / SECRETS_DIR
        self._sealer = sealer
        self._keys = keys
        self._clock = clock
        self._lock = threading.Lock()
        ensure_private_dir(data_dir)
        ensure_private_dir(self._dir)

    def put(self, upload: SecretSetUpload) -> SecretSetInfo:
        """Verify, decrypt and seal an upload; :class:`SecretSetError` says why one is refused."""
        upload.verify()
        if len(upload.ciphertext) > MAX_CIPHERTEXT_BYTES:
            raise SecretSetError(f"ciphertext is larger than {MAX_CIPHERTEXT_BYTES} bytes")
        if upload.expires_at and upload.expires_at <= self._clock():
            raise SecretSetError("expiresAt is in the past")
        values = self._decrypt(upload)
        record = {
            "owner": upload.owner,
            "chainId": upload.chain_id,
            "jobId": upload.job_id.hex(),
            "version": upload.version,
            "expiresAt": upload.expires_at,
            "requesters": list(upload.requesters),
            "deleted": False,
            "values": values,
        }
        with self._lock:
            self._check_version(upload.secret_set_id, upload.version)
            self._write(upload.secret_set_id, record)
        log.info("secret set 0x%s stored at version %d", upload.secret_set_id.hex(), upload.version)
        return SecretSetInfo(upload.secret_set_id, upload.version, upload.expires_at, False)

    def delete(self, deletion: SecretSetDeletion) -> SecretSetInfo:
        """Replace a set by a tombstone at ``deletion.version``; the values are gone for good."""
        deletion.verify()
        record = {
            "owner": deletion.owner,
            "chainId": deletion.chain_id,
            "jobId": deletion.job_id.hex(),
            "version": deletion.version,
            "expiresAt": 0,
            "requesters": [],
            "deleted": True,
            "values": {},
        }
        with self._lock:
            self._check_version(deletion.secret_set_id, deletion.version)
            self._write(deletion.secret_set_id, record)
        log.info("secret set 0x%s deleted at version %d", deletion.secret_set_id.hex(), deletion.version)
        return SecretSetInfo(deletion.secret_set_id, deletion.version, 0, True)

    def info(self, secret_set_id: bytes) -> SecretSetInfo | None:
        """Version, expiry and deletion state of a stored set, or None."""
        record = self._read(secret_set_id)
        if record is None:
            return None
        return SecretSetInfo(secret_set_id, int(record["version"]), int(record["expiresAt"]), bool(record["deleted"]))

    def resolve(self, secret_set_id: bytes, chain_id: int, job_id: bytes, requester: str) -> Mapping[str, str]:
        """The values of a set for one request, or :class:`SecretUnavailableError` saying why not."""
        ref = f"secret set 0x{secret_set_id.hex()}"
        try:
            record = self._read(secret_set_id)
        except SealingError:
            raise SecretUnavailableError(f"{ref} cannot be unsealed here") from None
        if record is None:
            raise SecretUnavailableError(f"{ref} is not stored in this enclave; upload it to every enclave of the job")
        if record["deleted"]:
            raise SecretUnavailableError(f"{ref} was deleted by its owner")
        if record["expiresAt"] and record["expiresAt"] <= self._clock():
            raise SecretUnavailableError(f"{ref} expired at {record['expiresAt']}")
        if record["chainId"] != chain_id:
            raise SecretUnavailableError(f"{ref} is for chain {record['chainId']}, not {chain_id}")
        if record["jobId"] != job_id.hex():
            raise SecretUnavailableError(f"{ref} belongs to another job")
        allowed = {record["owner"].lower(), *(r.lower() for r in record["requesters"])}
        if requester.lower() not in allowed:
            raise SecretUnavailableError(f"{ref} does not allow requester {requester}")
        return MappingProxyType(dict(record["values"]))

    # ---------------------------------------------------------------- internals

    def _decrypt(self, upload: SecretSetUpload) -> dict[str, str]:
        try:
            parsed = parse_input(upload.ciphertext)
        except EnvelopeError as exc:
            raise SecretSetError(f"ciphertext: {exc}") from None
        if parsed.suite is None or parsed.options:
            raise SecretSetError("ciphertext must be sealed to an enclave key (suite || keyId || enc || ct)")
        assert parsed.key_id is not None
        pair = self._keys.lookup(parsed.suite, parsed.key_id)
        if pair is None:
            raise SecretSetError(
                f"ciphertext is sealed to key 0x{parsed.key_id.hex()}, which this enclave does not hold; "
                "encrypt to this enclave's key from the registry"
            )
        info = secrets_info(upload.chain_id, upload.owner, upload.job_id, upload.name)
        try:
            plaintext = pair.open(parsed.body, info)
        except DecryptionError:
            raise SecretSetError(
                "ciphertext does not open: it was tampered with, or sealed for another owner, chain, job or name"
            ) from None
        try:
            document = json.loads(plaintext)
        except ValueError:
            raise SecretSetError("the decrypted secrets are not a JSON object") from None
        return check_secret_values(document)

    def _check_version(self, secret_set_id: bytes, version: int) -> None:
        try:
            stored = self._read(secret_set_id)
        except SealingError:
            stored = None  # an unreadable file is replaced by a newer, valid upload
        if stored is not None and version <= int(stored["version"]):
            raise SecretSetError(
                f"version {version} is not above the stored version {stored['version']}: use a higher version"
            )

    def _path(self, secret_set_id: bytes) -> Path:
        return self._dir / f"{secret_set_id.hex()}.sealed"

    def _read(self, secret_set_id: bytes) -> dict | None:
        path = self._path(secret_set_id)
        if not path.exists():
            return None
        plaintext = self._sealer.unseal(path.read_bytes(), SECRETS_PURPOSE + secret_set_id)
        return json.loads(plaintext)

    def _write(self, secret_set_id: bytes, record: dict) -> None:
        path = self._path(secret_set_id)
        sealed = self._sealer.seal(json.dumps(record, sort_keys=True).encode(), SECRETS_PURPOSE + secret_set_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        write_new_private_file(tmp, sealed)
        os.replace(tmp, path)
