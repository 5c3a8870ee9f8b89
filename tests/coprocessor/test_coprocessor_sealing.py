"""Sealing and enclave keys: round trip, file modes, tampering, restarts, no key material in repr."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from coprocessor.keys import KEYS_FILE, KEYS_PURPOSE, EnclaveKeys, load_or_create_keys
from coprocessor.sealing import ROOT_KEY_FILE, SEAL_VERSION, SealingError, SimulatedSealer
from verifier.hashing import keccak256
from verifier.signing import recover_signer
from verifier.suites import HpkeKeyPair, Suite, parse_key_bundle


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_seal_round_trip_and_layout(tmp_path: Path) -> None:
    sealer = SimulatedSealer.open(tmp_path)
    sealed = sealer.seal(b"secret bytes", b"purpose")
    assert sealed[0] == SEAL_VERSION
    assert len(sealed) == 1 + 12 + len(b"secret bytes") + 16
    assert b"secret bytes" not in sealed
    assert sealer.unseal(sealed, b"purpose") == b"secret bytes"
    assert sealer.seal(b"secret bytes", b"purpose") != sealed  # fresh nonce each time


def test_unseal_rejects_other_purpose_version_truncation_and_other_root(tmp_path: Path) -> None:
    sealer = SimulatedSealer.open(tmp_path / "a")
    sealed = sealer.seal(b"x" * 40, b"purpose")
    with pytest.raises(SealingError, match="authentication"):
        sealer.unseal(sealed, b"other purpose")
    with pytest.raises(SealingError, match="version"):
        sealer.unseal(b"\x02" + sealed[1:], b"purpose")
    with pytest.raises(SealingError, match="truncated"):
        sealer.unseal(sealed[:20], b"purpose")
    with pytest.raises(SealingError, match="authentication"):
        SimulatedSealer.open(tmp_path / "b").unseal(sealed, b"purpose")


def test_first_start_creates_private_files_and_restart_keeps_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_or_create_keys(data_dir)
    assert mode(data_dir / KEYS_FILE) == 0o600
    assert mode(data_dir / ROOT_KEY_FILE) == 0o600
    assert mode(data_dir) == 0o700
    assert len((data_dir / ROOT_KEY_FILE).read_bytes()) == 32
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([KEYS_FILE, ROOT_KEY_FILE])  # no temp files left

    second = load_or_create_keys(data_dir)
    assert second.signer_address == first.signer_address
    assert second.hpke_keys == first.hpke_keys
    assert second.to_bytes() == first.to_bytes()
    assert load_or_create_keys(tmp_path / "other").signer_address != first.signer_address


def test_sealed_file_holds_no_plaintext_key(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path)
    sealed = (tmp_path / KEYS_FILE).read_bytes()
    secrets = [keys.current.to_json()["signingKey"], *keys.current.to_json()["hpke"].values()]  # type: ignore[union-attr]
    for secret in secrets:
        assert bytes.fromhex(secret) not in sealed and secret.encode() not in sealed
    assert SimulatedSealer.open(tmp_path).unseal(sealed, KEYS_PURPOSE) == keys.to_bytes()


@pytest.mark.parametrize("offset", [0, 5, 40, -1])
def test_tampered_sealed_file_is_rejected_naming_the_file(tmp_path: Path, offset: int) -> None:
    load_or_create_keys(tmp_path)
    path = tmp_path / KEYS_FILE
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SealingError) as info:
        load_or_create_keys(tmp_path)
    assert str(path) in str(info.value)


def test_missing_root_with_existing_sealed_keys_is_an_error_not_new_keys(tmp_path: Path) -> None:
    load_or_create_keys(tmp_path)
    (tmp_path / ROOT_KEY_FILE).unlink()
    with pytest.raises(SealingError, match=ROOT_KEY_FILE):
        load_or_create_keys(tmp_path)
    assert not (tmp_path / ROOT_KEY_FILE).exists()


def test_wrong_length_root_is_rejected(tmp_path: Path) -> None:
    (tmp_path / ROOT_KEY_FILE).write_bytes(b"short")
    with pytest.raises(SealingError, match="32 bytes"):
        SimulatedSealer.open(tmp_path)


def test_group_readable_sealed_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_or_create_keys(tmp_path)
    os.chmod(tmp_path / KEYS_FILE, 0o644)
    load_or_create_keys(tmp_path)
    assert "0600" in caplog.text


def test_keys_sign_and_hide_material() -> None:
    keys = EnclaveKeys.generate()
    digest = keccak256(b"message")
    signature = keys.sign(digest)
    assert len(signature) == 65
    assert recover_signer(digest, signature) == keys.signer_address
    assert parse_key_bundle(keys.hpke_keys) == {
        Suite.X25519: keys.public_key(Suite.X25519),
        Suite.MLKEM768_X25519: keys.public_key(Suite.MLKEM768_X25519),
    }
    assert len(keys.public_key(Suite.X25519)) == 32 and len(keys.public_key(Suite.MLKEM768_X25519)) == 1216
    doc = keys.current.to_json()
    for text in (repr(keys), str(keys), repr(keys.current)):
        assert keys.signer_address in text
        assert str(doc["signingKey"]) not in text
        assert all(str(v) not in text for v in doc["hpke"].values())  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(keys)


def test_key_round_trip_bytes() -> None:
    keys = EnclaveKeys.generate()
    again = EnclaveKeys.from_bytes(keys.to_bytes())
    assert again.signer_address == keys.signer_address and again.hpke_keys == keys.hpke_keys
    with pytest.raises(ValueError):
        EnclaveKeys.from_bytes(b"\x01" * 63)


def test_first_format_key_file_still_unseals_with_its_x25519_key() -> None:
    legacy = os.urandom(32) + os.urandom(32)  # format 1: signing key || X25519 key
    keys = EnclaveKeys.from_bytes(legacy)
    assert keys.suites == (Suite.X25519,)
    assert keys.public_key(Suite.X25519) == HpkeKeyPair(Suite.X25519, legacy[32:]).public_key
