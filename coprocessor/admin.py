"""Who may manage the enclave's keys (``POST /v1/keys/rotate`` and ``/v1/keys/activate``).

Rotating or activating keys cannot leak a key or forge a result, but a stranger who could do it at will
could keep the enclave signing with keys the registry does not know yet: an outage. So these endpoints
answer only the operator's tooling: a client that presents the admin token (``Authorization: Bearer
<token>``, compared in constant time) when one is configured (``TEEBRIDGE_COPROCESSOR_ADMIN_TOKEN``), and
otherwise only clients on the loopback interface.
"""

from __future__ import annotations

import hmac
import ipaddress

ADMIN_TOKEN_VARIABLE = "TEEBRIDGE_COPROCESSOR_ADMIN_TOKEN"
MIN_ADMIN_TOKEN_LENGTH = 16


class AdminRefusedError(Exception):
    """The client may not manage keys; ``status`` (401 or 403) and the message say what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a client address as the server saw it) is a loopback address."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_admin(admin_token: str | None, client_host: str | None, authorization: str | None) -> None:
    """Raise :class:`AdminRefusedError` unless this client may manage keys (see the module docstring)."""
    if admin_token is None:
        if is_loopback(client_host):
            return
        raise AdminRefusedError(
            403,
            "key management is open to loopback clients only; to manage keys from another host, set "
            f"{ADMIN_TOKEN_VARIABLE} on the coprocessor and send it as 'Authorization: Bearer <token>'",
        )
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), admin_token.encode()):
        raise AdminRefusedError(
            401, f"key management needs 'Authorization: Bearer <token>' with the coprocessor's {ADMIN_TOKEN_VARIABLE}"
        )
