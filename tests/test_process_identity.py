"""``relayer.process_identity``: a lease holder on this host whose process is gone is known gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from relayer.process_identity import ProcessIdentity, holder_is_gone


def test_an_identity_reads_back() -> None:
    me = ProcessIdentity.current()
    assert me.pid == os.getpid() and me.host == socket.gethostname()
    assert ProcessIdentity.parse(str(me)) == me
    assert ProcessIdentity.parse("0x" + "ab" * 20) is None and ProcessIdentity.parse("h/notapid/t") is None
    assert ProcessIdentity.current() != me, "a fresh token each time"


def test_a_running_process_is_not_gone_and_an_ended_one_is() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    holder = str(ProcessIdentity(socket.gethostname(), child.pid, "t"))
    try:
        assert not holder_is_gone(holder)
        assert not holder_is_gone(str(ProcessIdentity.current()))
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped: a zombie
        assert holder_is_gone(holder)
    finally:
        child.wait()
    assert holder_is_gone(holder)


def test_a_holder_on_another_host_or_of_another_kind_is_never_known_gone() -> None:
    assert not holder_is_gone(str(ProcessIdentity("another-host.invalid", 2**22 + 7, "t")))
    assert not holder_is_gone("0x" + "ab" * 20)
