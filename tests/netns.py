"""Simulated hosts for the tests: Linux network namespaces joined by veth links to one
bridge, which the suite creates and removes itself (issue 15, item 6).

The test process stays in the machine's own namespace and reaches every host through the
bridge (its address ends in ``.1``); each :class:`Host` is a namespace with one address on
the bridge's subnet. :meth:`Host.cut` takes the host's link down: packets to and from it
are dropped, with no reset, as in a real partition (connections hang until they time out,
and carry on if the link comes back first); :meth:`Host.heal` brings it back.

Needs root and ``ip`` (iproute2); :func:`unavailable` says why not, for a skip reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None if they can."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"tqprobe{secrets.token_hex(3)}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _subnet() -> str:
    """A 10.231.x.0/24 that no interface here uses yet (the first three octets)."""
    used = _ip("-4", "-o", "addr").stdout
    for _ in range(50):
        prefix = f"10.231.{secrets.randbelow(250) + 1}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.231.x.0/24 subnet for the test network")


class Host:
    """One simulated host: a network namespace with one address on the lab's bridge."""

    def __init__(self, lab: Network, name: str, address: str) -> None:
        tag = secrets.token_hex(3)
        self.namespace = f"tq{name[:4]}{tag}"
        self.address = address
        self._outside = f"tqh{tag}"  # the link's end on the bridge (at most 15 characters)
        inside = f"tqn{tag}"
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self._outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", self.namespace)
        _ip("link", "set", self._outside, "master", lab.bridge)
        _ip("link", "set", self._outside, "up")
        self._inside("addr", "add", f"{address}/24", "dev", inside)
        self._inside("link", "set", inside, "up")
        self._inside("link", "set", "lo", "up")

    def _inside(self, *args: str) -> None:
        _ip("-n", self.namespace, *args)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run on this host (``ip netns exec`` execs it: the pid is argv's)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def cut(self) -> None:
        """Partition this host from the others: its link goes down, packets are dropped."""
        _ip("link", "set", self._outside, "down")

    def heal(self) -> None:
        """End the partition."""
        _ip("link", "set", self._outside, "up")

    def remove(self) -> None:
        _ip("link", "del", self._outside, check=False)
        _ip("netns", "del", self.namespace, check=False)


class Network:
    """A bridge and the hosts on it; :meth:`remove` takes it all down."""

    def __init__(self) -> None:
        self._prefix = _subnet()
        self.bridge = f"tqbr{secrets.token_hex(3)}"
        self.address = f"{self._prefix}.1"  # the test process's own address on the bridge
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self.hosts: list[Host] = []

    def host(self, name: str) -> Host:
        """A new host on the bridge."""
        host = Host(self, name, f"{self._prefix}.{len(self.hosts) + 2}")
        self.hosts.append(host)
        return host

    def remove(self) -> None:
        for host in self.hosts:
            host.remove()
        _ip("link", "del", self.bridge, check=False)
