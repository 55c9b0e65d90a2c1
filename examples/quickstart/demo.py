"""End-to-end demo of the quickstart (``make demo``): Redis, a worker and the app, over HTTP.

Uses ``$TASKQ_BROKER_URL`` when set; otherwise starts a throwaway ``redis-server`` on a
free loopback port (never 6379). Then starts a worker and ``flask run`` as subprocesses,
enqueues ``add(2, 3)`` and ``word_count(...)`` with ``POST`` requests, polls
``GET /result/<id>`` until they are ready, and stops everything again, also on failure.
Exits 0 on success, 1 with a one-line reason (and the relevant log) otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[2]
APP = "examples.quickstart.app:create_app"
START_TIMEOUT = 20.0  # seconds for each process to come up
TASK_TIMEOUT = 15.0  # seconds for a task to finish


class DemoError(Exception):
    """A step of the demo failed; the message says which."""


class Process:
    """A subprocess whose output is collected by a thread (so its pipe never fills up)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        show_log_on_failure: bool = True,
    ) -> None:
        self.name = name
        self.show_log_on_failure = show_log_on_failure
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def tail(self, count: int = 20) -> str:
        """The last ``count`` lines of the output."""
        return "".join(self.lines[-count:]).rstrip()

    def check_alive(self) -> None:
        """Raise a DemoError if the process has exited."""
        if self.proc.poll() is not None:
            detail = "" if self.show_log_on_failure else f":\n{self.tail()}"
            raise DemoError(f"{self.name} exited with code {self.proc.returncode}{detail}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process (SIGKILL its group if it lingers); return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def free_port() -> int:
    """A TCP port nobody listens on at the moment, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.02
) -> Any:
    """Poll ``condition`` until it returns something truthy; DemoError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def redis_pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def start_redis() -> tuple[Process, int]:
    """A throwaway redis-server on a free loopback port, with persistence off."""
    if shutil.which("redis-server") is None:
        raise DemoError(
            "redis-server is not on PATH: install it (e.g. `apt install "
            "redis-server`) or set TASKQ_BROKER_URL to a Redis you can use"
        )
    port = free_port()
    server = Process(
        "redis-server",
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--loglevel",
            "warning",
        ],
        show_log_on_failure=False,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def up() -> bool:
        server.check_alive()
        return redis_pings(url)

    wait_for(f"redis-server on port {port}", up, START_TIMEOUT)
    return server, port


def http(method: str, url: str, data: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Send a JSON request; return the status code and the decoded JSON answer."""
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise DemoError(
            f"{method} {url} answered {exc.code}: {exc.read().decode(errors='replace')[:500]}"
        ) from None


def server_up(base: str, server: Process) -> bool:
    """True once the app answers HTTP at all (any status code)."""
    server.check_alive()
    try:
        with urllib.request.urlopen(base + "/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # 404 for "/": the server is up
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def run_task(base: str, path: str, payload: dict[str, Any], label: str) -> Any:
    """POST ``payload`` to ``path``, then poll the result until ready; return its value."""
    status, answer = http("POST", base + path, payload)
    if status != 202 or not isinstance(answer, dict) or "task_id" not in answer:
        raise DemoError(f"POST {path} answered {status} {answer!r}, not 202 with a task_id")
    task_id = answer["task_id"]
    print(f"enqueued {label} as {task_id}")
    started = time.monotonic()

    def ready() -> dict[str, Any] | None:
        _, result = http("GET", f"{base}/result/{task_id}")
        return result if result["ready"] else None

    result = wait_for(f"{label} to finish", ready, TASK_TIMEOUT, interval=0.01)
    elapsed = time.monotonic() - started
    print(f"result: {result['state']} {json.dumps(result['value'])} after {elapsed:.3f} s")
    if not result["successful"]:
        raise DemoError(f"{label} did not succeed: {result!r}")
    return result["value"]


def run(processes: list[Process]) -> None:
    """The demo itself; every process it starts is appended to ``processes``."""
    broker_url = os.environ.get("TASKQ_BROKER_URL")
    if broker_url:
        if not redis_pings(broker_url):
            raise DemoError(f"cannot reach Redis at TASKQ_BROKER_URL={broker_url}")
        print(f"using Redis at {broker_url} (TASKQ_BROKER_URL)")
    else:
        server, redis_port = start_redis()
        processes.append(server)
        broker_url = f"redis://127.0.0.1:{redis_port}/0"
        print(f"started a throwaway redis-server on port {redis_port}")

    env = {
        **os.environ,
        "TASKQ_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    flask = [sys.executable, "-m", "flask", "--app", APP]

    worker = Process("worker", [*flask, "taskq", "worker", "-P", "solo", "-l", "info"], env)
    processes.append(worker)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = Process(
        "flask run", [*flask, "run", "--host", "127.0.0.1", "--port", str(port), "--no-reload"], env
    )
    processes.append(web)

    def worker_ready() -> bool:
        worker.check_alive()
        return " ready" in worker.log

    wait_for("the worker to be ready", worker_ready, START_TIMEOUT)
    print(f"worker ready (pid {worker.proc.pid}, solo pool)")
    wait_for(f"the app on {base}", lambda: server_up(base, web), START_TIMEOUT)
    print(f"app listening on {base}")

    value = run_task(base, "/add", {"x": 2, "y": 3}, "add(2, 3)")
    if value != 5:
        raise DemoError(f"add(2, 3) returned {value!r}, not 5")
    text = "the quick brown fox jumps over the lazy dog and the cat"
    counted = run_task(base, "/word-count", {"text": text}, f'word_count("{text[:19]}...")')
    if counted["words"] != 12:
        raise DemoError(f"word_count counted {counted['words']} words, not 12")

    code = worker.stop(timeout=40)
    if code != 0:
        raise DemoError(f"the worker exited with code {code} after SIGTERM")
    print("worker stopped gracefully on SIGTERM (exit code 0)")


def main() -> int:
    # On SIGTERM, unwind through the ``finally`` below so nothing is left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    processes: list[Process] = []
    try:
        run(processes)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        for process in processes:
            if process.show_log_on_failure and process.tail():
                print(
                    f"--- last lines of the {process.name} log ---\n{process.tail()}",
                    file=sys.stderr,
                )
        return 1
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        return 130
    finally:
        for process in reversed(processes):
            process.stop()
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
