"""The relayer's submitter accounts: several funded keys used side by side in one process.

Each account has its own nonce sequence (persisted per ``sender`` in the store, see
:meth:`relayer.store.SqlStore.next_nonce`), so transactions of different accounts never wait for each other:
a stuck or underfunded account holds up only its own transactions. :class:`AccountPool` ranks the accounts for
the next transaction: accounts with a transaction stuck longer than ``stuck_after`` last, then accounts already
used in this pass, then the fewest open (unmined) transactions, ties taken round-robin. An account whose balance
cannot pay for a transaction is skipped for the rest of the pass, with a WARNING (at most one per alert interval).

Keys come from the environment, never from arguments (:func:`load_keys`): ``TEEBRIDGE_RELAYER_KEY`` (one key),
``TEEBRIDGE_RELAYER_KEYS`` (comma-separated) and ``TEEBRIDGE_RELAYER_KEY_FILE`` (a file with one key a line).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

log = logging.getLogger("teebridge.relayer.accounts")

KEY_ENV = "TEEBRIDGE_RELAYER_KEY"
KEYS_ENV = "TEEBRIDGE_RELAYER_KEYS"
KEY_FILE_ENV = "TEEBRIDGE_RELAYER_KEY_FILE"


class KeyConfigError(ValueError):
    """The relayer keys are missing or malformed (the message never contains a key)."""


def parse_keys(text: str, source: str) -> list[str]:
    """The keys in ``text`` (separated by commas, whitespace or newlines; ``#`` starts a comment), checked."""
    keys = []
    words = (w for line in text.splitlines() for w in line.split("#", 1)[0].replace(",", " ").split())
    for i, word in enumerate(words, start=1):
        try:
            Account.from_key(word)
        except Exception as exc:  # eth_account raises several types; never echo the key itself
            raise KeyConfigError(
                f"entry {i} of {source} is not a 32-byte hex private key ({type(exc).__name__})"
            ) from None
        keys.append(word)
    return keys


def load_keys(env: Mapping[str, str]) -> list[str]:
    """The relayer's private keys from ``env``, in order, duplicates removed: ``TEEBRIDGE_RELAYER_KEY`` first, then
    ``TEEBRIDGE_RELAYER_KEYS``, then the file named by ``TEEBRIDGE_RELAYER_KEY_FILE``. The first key's account is
    the relayer's identity (its lease owner with a shared store)."""
    keys: list[str] = []
    if env.get(KEY_ENV):
        keys += parse_keys(env[KEY_ENV], KEY_ENV)
    if env.get(KEYS_ENV):
        keys += parse_keys(env[KEYS_ENV], KEYS_ENV)
    if env.get(KEY_FILE_ENV):
        path = Path(env[KEY_FILE_ENV])
        try:
            text = path.read_text()
        except OSError as exc:
            raise KeyConfigError(f"cannot read {KEY_FILE_ENV}={path}: {exc.strerror}; check the path") from exc
        keys += parse_keys(text, f"{KEY_FILE_ENV} ({path})")
    if not keys:
        raise KeyConfigError(
            f"set {KEY_ENV} to the relayer account's private key, or {KEYS_ENV} (comma-separated) or {KEY_FILE_ENV}"
            " (a file, one key a line) for several accounts; never pass keys as arguments"
        )
    unique: dict[str, str] = {}
    for key in keys:
        unique.setdefault(Account.from_key(key).address.lower(), key)
    return list(unique.values())


@dataclass
class SubmitterAccount:
    """One funded account the relayer signs with, and what the relayer last learnt of it."""

    account: LocalAccount
    balance: int | None = None
    """Wei, as last read (each pass reads it)."""
    last_alert: float | None = None
    """Monotonic time of the last low-balance warning, None while the balance is fine."""

    @property
    def address(self) -> str:
        """The checksummed address."""
        return self.account.address

    @property
    def key(self) -> str:
        """The lowercase address: how the store names a transaction's ``sender``."""
        return self.account.address.lower()


class AccountPool:
    """The relayer's accounts (at least one; the first is the primary: the relayer's identity)."""

    def __init__(self, accounts: Iterable[LocalAccount]) -> None:
        self.accounts: list[SubmitterAccount] = []
        seen: set[str] = set()
        for account in accounts:
            if account.address.lower() not in seen:
                seen.add(account.address.lower())
                self.accounts.append(SubmitterAccount(account))
        if not self.accounts:
            raise KeyConfigError("a relayer needs at least one account")
        self._by_key = {a.key: a for a in self.accounts}
        self._turn = 0

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> AccountPool:
        """A pool of the accounts of ``keys``."""
        return cls(Account.from_key(k) for k in keys)

    @property
    def primary(self) -> SubmitterAccount:
        """The first account: the relayer's identity, and the sender of rows older than per-account senders."""
        return self.accounts[0]

    def __len__(self) -> int:
        return len(self.accounts)

    def __iter__(self):
        return iter(self.accounts)

    def __contains__(self, sender: object) -> bool:
        return isinstance(sender, str) and sender.lower() in self._by_key

    def get(self, sender: str) -> SubmitterAccount | None:
        """The account of ``sender`` (any case), or None if it is not one of ours."""
        return self._by_key.get(sender.lower())

    def ranked(
        self,
        open_txs: Mapping[str, tuple[int, float]],
        *,
        used: Iterable[str] = (),
        skipped: Iterable[str] = (),
        stuck_after: float = 0.0,
        now: float | None = None,
    ) -> list[SubmitterAccount]:
        """The accounts to try for the next transaction, best first, ``skipped`` ones left out.

        ``open_txs`` maps a sender to (its open transactions, the creation time of its oldest); ``used`` are the
        accounts that already sent in this pass. An account whose oldest open transaction is older than
        ``stuck_after`` seconds (> 0) comes last: its later nonces would wait behind the stuck one.
        """
        now = time.time() if now is None else now
        used_set, skipped_set = {u.lower() for u in used}, {s.lower() for s in skipped}
        n = len(self.accounts)

        def rank(item: tuple[int, SubmitterAccount]) -> tuple[bool, bool, int, int]:
            index, account = item
            count, oldest = open_txs.get(account.key, (0, now))
            stuck = stuck_after > 0 and count > 0 and now - oldest >= stuck_after
            return (stuck, account.key in used_set, count, (index - self._turn) % n)

        candidates = [(i, a) for i, a in enumerate(self.accounts) if a.key not in skipped_set]
        return [a for _, a in sorted(candidates, key=rank)]

    def rotate(self, account: SubmitterAccount) -> None:
        """Note that ``account`` sent: ties go to the accounts after it next time (round-robin)."""
        self._turn = (self.accounts.index(account) + 1) % len(self.accounts)
