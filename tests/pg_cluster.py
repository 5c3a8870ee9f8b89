"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` on a temp dir, a free port on 127.0.0.1.

Binaries are found on PATH or under Debian's ``/usr/lib/postgresql/<version>/bin`` (package ``postgresql``).
PostgreSQL refuses to run as root, so under root the cluster runs as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from teebridge.anvil import free_port

#: Set (by ``.ci/run``) to make a missing PostgreSQL fail the tests that need it instead of skipping them.
REQUIRE_ENV = "TEEBRIDGE_REQUIRE_POSTGRES"


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: on PATH, else the newest Debian install."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    return Path(candidates[-1]).parent if candidates else None


class PgCluster:
    """One private cluster; :meth:`database` makes a fresh empty database and returns its URL."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="teebridge-pg-"))
        self.data = self.root / "data"
        self.user: str | None = None
        self._count = 0
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError(
                    "running as root, PostgreSQL needs an unprivileged user: create 'postgres' (the Debian package"
                    " `postgresql` does) or run the tests as a normal user"
                ) from exc
            self.user = "postgres"
            shutil.chown(self.root, "postgres")

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], user=self.user, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> PgCluster:
        """initdb (trust auth, superuser ``postgres``) and start on 127.0.0.1:port; wait until it accepts."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        # The server's output goes to a log file: it must not inherit (and hold open) our capture pipes.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -F -c max_connections=100"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-m", "fast", "-w", action)

    @property
    def admin_url(self) -> str:
        """URL of the maintenance database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database(self, prefix: str = "t") -> str:
        """Create an empty database; return its URL."""
        import psycopg

        self._count += 1
        name = f"{prefix}_{self._count}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        """Stop and start the server (fast shutdown): every client connection is cut."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg_ctl("stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
