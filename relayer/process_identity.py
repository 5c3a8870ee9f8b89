"""Which relayer process holds what: an identity per process, for the leases that keep one account to one process.

Nonces are per account, so two relayer processes signing with the same account would hand out the same nonces
and replace each other's transactions; sharing one store, they would also both take the work leased to that
account. Each process therefore holds a named lease per account (:meth:`relayer.store.SqlStore.hold`) under
its :class:`ProcessIdentity`. A holder on this host whose process is gone (killed, crashed) is taken over at
once; one on another host only when its lease runs out.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """``host/pid/token``: the token tells apart two processes that reuse one pid."""

    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process, with a fresh random token."""
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(4))

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.token}"

    @classmethod
    def parse(cls, text: str) -> ProcessIdentity | None:
        """The identity written as ``text``, or None when it is not one (another kind of lease holder)."""
        parts = text.rsplit("/", 2)
        if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2]:
            return None
        return cls(parts[0], int(parts[1]), parts[2])


def holder_is_gone(text: str) -> bool:
    """Whether the process named by the lease holder ``text`` certainly no longer runs: it ran on this host and
    its pid is free or a zombie. A holder on another host, or not a process identity, is never known gone."""
    identity = ProcessIdentity.parse(text)
    if identity is None or identity.host != socket.gethostname():
        return False
    return not _running(identity.pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it runs
    try:
        # a killed child its parent has not reaped yet still answers signal 0: look at its state
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] != "Z"
