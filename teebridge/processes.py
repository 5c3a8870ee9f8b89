"""Child processes of the local stack: started with their output in a log file, stopped on exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LISTENING = re.compile(r"listening on (http://\S+)")
RELAYER_READY = re.compile(r"relaying router")
FEEDER_READY = re.compile(r"pushing .* every")


@dataclass
class Child:
    """One child process and its log file."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0

    def start(self) -> Child:
        """Launch the process, appending its stdout and stderr to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True
        )
        log.close()
        return self

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = 30.0, *, after: int = 0) -> re.Match[str]:
        """Wait until the log (from byte ``after`` on) has a line matching ``pattern``; return the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[after:].decode(errors="replace") if self.log_path.exists() else ""
            match = pattern.search(text)
            if match:
                return match
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not get ready within {timeout}s; see {self.log_path}")

    def wait_for_url(self, timeout: float = 30.0) -> str:
        """Wait for the ``listening on http://...`` line in the log; return the URL."""
        return self.wait_for_line(LISTENING, timeout).group(1)

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, no clean-up: for crash tests."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if not self.alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def python_module(module: str, *args: str) -> list[str]:
    """Command line that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
