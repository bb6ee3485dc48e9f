"""Private database servers for tests that restart or kill a server.

The machine's own PostgreSQL is never restarted, stopped or reconfigured by the suite: a test
that needs a server to go away starts its own cluster (``initdb`` into a temporary directory,
listening on a free loopback port), and stops and deletes it at the end. As root, the cluster runs
as the ``postgres`` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1:<port>, trust auth, user ``postgres``.

    ``durable``: keep PostgreSQL's defaults (fsync on), for benchmarks. ``links``: more addresses
    to listen on, each as "address/prefix" of a private link of this machine (the host side of a
    network namespace's veth, tests/netns.py), whose network's clients are trusted."""

    def __init__(self, links: tuple[str, ...] = (), durable: bool = False) -> None:
        self.bin = postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                               "apt-get install postgresql")
        self.dir = Path(tempfile.mkdtemp(prefix="loom-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.links = links
        self.durable = durable  # PostgreSQL's own defaults; else fsync=off, as tests need no durability
        self._user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)

    def start(self) -> "PrivatePostgres":
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        if self.links:
            with open(self.data / "pg_hba.conf", "a") as hba:
                for link in self.links:
                    hba.write(f"host all all {ipaddress.ip_interface(link).network} trust\n")
        for _ in range(5):
            self._pg_ctl("start")
            if self._owns_port():
                return self
            # Another process took the port between free_port() and the bind (the server then
            # listens on its socket only): try another.
            self._pg_ctl("stop")
            self.port = free_port()
        raise RuntimeError("private PostgreSQL could not get a free loopback port")

    def _owns_port(self) -> bool:
        try:
            found = self.psql("SHOW data_directory").strip()
        except subprocess.CalledProcessError:
            return False
        return os.path.realpath(found) == os.path.realpath(self.data)

    def _pg_ctl(self, action: str) -> None:
        listen = ",".join([self.host, *(link.split("/")[0] for link in self.links)])
        options = (f"-c listen_addresses={listen} -c port={self.port} -c unix_socket_directories={self.dir} "
                   f"{'' if self.durable else '-c fsync=off '}-c max_connections=200")
        args = ["pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.dir / "log"), "-o", options]
        if action == "stop":
            args += ["-m", "immediate"]
        self._run(*args, action)

    def restart(self) -> None:
        """Stop the server at once (every connection drops) and start it again."""
        self.halt()
        self.resume()

    def halt(self) -> None:
        """Stop the server at once: every connection drops, new ones are refused."""
        self._pg_ctl("stop")

    def resume(self) -> None:
        self._pg_ctl("start")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"private PostgreSQL on port {self.port} did not come up")

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run("psql", "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-Atc", sql).stdout

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.dir / "log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        try:
            self._pg_ctl("stop")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
