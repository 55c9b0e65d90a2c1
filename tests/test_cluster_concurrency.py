"""Per-key concurrency limits on a Redis Cluster (3 masters + 3 replicas): every script
touches one key's hash tag, and woken messages go back to their queue (another slot)
through the normal send path. Real ``flask taskq worker`` processes."""

from __future__ import annotations

import redis

from tests.conftest import wait_until

APP = "tests.apps.concurrency_app:create_app"


def test_limits_hold_on_a_cluster(
    cluster_url: str,
    redis_url: str,
    start_worker,
    monkeypatch,
):
    env = {
        "TASKQ_BROKER_URL": cluster_url,
        "TASKQ_RESULT_BACKEND": cluster_url,
        "TEST_REDIS_URL": redis_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from tests.apps.concurrency_app import create_app, work

    app = create_app()
    for _ in range(2):
        start_worker("-P", "threads", "-c", "3", app=APP, env=env, broker_url=cluster_url)
    with app.app_context():
        results = [work.delay(f"k{i % 3}", f"t{i}", 0.1) for i in range(12)]
        assert sorted(res.get(timeout=60) for res in results) == sorted(f"t{i}" for i in range(12))
    r = redis.Redis.from_url(redis_url)
    highest = {k.decode(): int(v) for k, v in r.hgetall("test:max").items()}
    assert set(highest) == {"k0", "k1", "k2"} and max(highest.values()) <= 2, highest
    assert r.llen("test:started") == 12
    wait_until(lambda: r.llen("test:done") == 12, 10, message="all recorded")
