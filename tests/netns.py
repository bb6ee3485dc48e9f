"""Worker "hosts" for tests: each a Linux network namespace joined to this machine by a veth link.

A host's processes reach the database only over their link (``server_address``), so taking the
link down cuts that host off exactly as a failed switch or a partition does: packets vanish, no
connection is reset, and every open socket waits. Programs run in the namespace under a hostname
of their own (a UTS namespace), so worker ids name their host as on real machines.

Needs root and iproute2; ``unavailable()`` says why not, for a test to skip with the reason.
Everything made here is removed by ``remove()``; addresses are private /30 links that exist only
on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "iproute2 (ip) or util-linux (unshare) is not installed"
    probe = f"loomprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    subprocess.run(command, check=True, capture_output=True, text=True)


class Host:
    """Namespace ``loomh<n>-<pid>``, link 10.213.<n>.0/30: this machine .1, the host .2."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.name = f"loom-host{number}"
        self.netns = f"loomh{number}-{os.getpid()}"
        self.outside = f"lmh{number}o{os.getpid() % 100000}"  # interface names: at most 15 characters
        self.inside = f"lmh{number}i{os.getpid() % 100000}"
        self.server_address = f"10.213.{number}.1"
        self.address = f"10.213.{number}.2"

    def create(self) -> "Host":
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
        _ip("link", "set", self.inside, "netns", self.netns)
        _ip("addr", "add", f"{self.server_address}/30", "dev", self.outside)
        _ip("link", "set", self.outside, "up")
        _ip("addr", "add", f"{self.address}/30", "dev", self.inside, netns=self.netns)
        _ip("link", "set", self.inside, "up", netns=self.netns)
        _ip("link", "set", "lo", "up", netns=self.netns)
        return self

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the host, under its own hostname."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                f'hostname {self.name} && exec "$@"', "sh", *argv]

    def cut(self) -> None:
        """Take the link down: the host can no longer reach anything outside itself."""
        _ip("link", "set", self.outside, "down")

    def restore(self) -> None:
        _ip("link", "set", self.outside, "up")

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
