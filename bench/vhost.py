"""A private RabbitMQ vhost for one measurement, made and removed with ``rabbitmqctl``
(never ``/``), on the server at 127.0.0.1:5672 with guest/guest."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator

HOST, PORT = "127.0.0.1", 5672
URL = "amqp://guest:guest@127.0.0.1:5672/{vhost}"


class VhostError(Exception):
    """rabbitmqctl is missing or failed."""


def ctl(*args: str) -> None:
    """Run ``rabbitmqctl -q ARGS``; VhostError with its last line of output if it fails."""
    try:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        text = (exc.stderr or exc.stdout or b"").decode(errors="replace").strip()
        lines = text.splitlines()
        raise VhostError(
            f"rabbitmqctl {args[0]}: " + (lines[-1] if lines else f"exit {exc.returncode}")
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VhostError(f"rabbitmqctl {args[0]}: {exc}") from None


def unavailable() -> str:
    """Why RabbitMQ cannot be used here, or "" when it can (a vhost made and removed)."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not on the PATH"
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as exc:
        return f"RabbitMQ not reachable at {HOST}:{PORT}: {exc.strerror or exc}"
    try:
        with private_vhost():
            pass
    except VhostError as exc:
        return str(exc)
    return ""


@contextlib.contextmanager
def private_vhost() -> Iterator[str]:
    """A fresh vhost ``bench-<hex>`` with all permissions for guest; yields its AMQP URL
    and deletes the vhost (and whatever queues it holds) afterwards."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield URL.format(vhost=name)
    finally:
        with contextlib.suppress(VhostError):
            ctl("delete_vhost", name)
