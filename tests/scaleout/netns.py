"""Hosts made of Linux network namespaces: one for the services, one per worker, a bridge.

Each worker namespace has one veth link (its eth0) to a bridge inside the services
namespace; every address is on one 10.x /24 with no default route, and nothing in the
machine's own namespace is configured or addressed. Names carry a random tag, so runs side
by side do not meet; `remove` deletes the namespaces, and their links with them.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import uuid


class Unavailable(Exception):
    """The machine cannot make namespaces (not root, no iproute2, no permission)."""


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Hosts:
    def __init__(self, workers: list[str]) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.subnet = f"10.{random.randint(64, 250)}.{random.randint(1, 254)}"
        self.services = f"jp-svc-{self.tag}"
        self.workers = {name: f"jp-{name}-{self.tag}" for name in workers}
        self.services_address = f"{self.subnet}.1"
        self.made: list[str] = []

    def create(self) -> Hosts:
        if shutil.which("ip") is None:
            raise Unavailable("no `ip` command (iproute2)")
        try:
            ip("netns", "add", self.services)
        except RuntimeError as exc:
            raise Unavailable(f"cannot make a network namespace: {exc}") from None
        self.made.append(self.services)
        try:
            svc = self.services
            ip("-n", svc, "link", "set", "lo", "up")
            ip("-n", svc, "link", "add", "br0", "type", "bridge")
            ip("-n", svc, "addr", "add", f"{self.services_address}/24", "dev", "br0")
            ip("-n", svc, "link", "set", "br0", "up")
            for index, (name, namespace) in enumerate(self.workers.items(), start=10):
                ip("netns", "add", namespace)
                self.made.append(namespace)
                ip("-n", namespace, "link", "set", "lo", "up")
                # Made inside the services namespace, its peer straight inside the worker's.
                ip("-n", svc, "link", "add", f"to-{name}", "type", "veth", "peer", "name", "eth0",
                   "netns", namespace)
                ip("-n", svc, "link", "set", f"to-{name}", "master", "br0", "up")
                ip("-n", namespace, "addr", "add", f"{self.subnet}.{index}/24", "dev", "eth0")
                ip("-n", namespace, "link", "set", "eth0", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def exec_args(self, namespace: str, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", namespace, *args]

    def cut(self, worker: str) -> None:
        """The worker host's only link goes down: it reaches nothing, nothing reaches it."""
        ip("-n", self.workers[worker], "link", "set", "eth0", "down")

    def remove(self) -> None:
        for namespace in reversed(self.made):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        self.made.clear()
