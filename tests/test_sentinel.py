"""``redis+sentinel://`` URLs: the broker follows the master a real Sentinel names."""

from __future__ import annotations

import subprocess

import pytest

from tests.apps.basic import add
from tests.conftest import RedisServer, free_port, wait_until


@pytest.fixture
def sentinel(own_redis, tmp_path):
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor themaster 127.0.0.1 {own_redis.port} 1\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    probe = RedisServer(port).client()

    def knows_master():
        try:
            return probe.execute_command("SENTINEL", "get-master-addr-by-name", "themaster")
        except Exception:
            return None

    wait_until(knows_master, message="sentinel to know the master")
    yield f"redis+sentinel://127.0.0.1:{port}/themaster/0"
    proc.kill()
    proc.wait()


def test_round_trip_through_a_sentinel_url(sentinel, start_worker, monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", sentinel)
    from tests.apps.basic import create_app

    app = create_app()
    start_worker("-P", "solo", broker_url=sentinel)
    with app.app_context():
        assert add.delay(20, 22).get(timeout=10) == 42


def test_sentinel_url_must_name_the_service():
    from flask_taskq.broker.redis import connect

    with pytest.raises(ValueError, match="name the Sentinel service"):
        connect("redis+sentinel://127.0.0.1:26379")
