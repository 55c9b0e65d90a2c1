"""Rate limits: parsing, the token bucket shared by all workers, runtime overrides and
``flask taskq rate-limit``, against the real Redis of conftest.py."""

from __future__ import annotations

import math
import threading
import time

import pytest
import redis
from flask import Flask

from flask_taskq import TaskQueue
from flask_taskq.keys import Keys
from flask_taskq.ratelimit import RateLimiter, burst_for, format_rate, parse_rate
from flask_taskq.redis_common import ERRORS
from flask_taskq.store.redis.ratelimits import RedisRateLimitStore
from tests.conftest import wait_until

ADD = "tests.apps.basic.add"


def _limiter(client: redis.Redis, keys: Keys, refresh_interval: float = 1.0) -> RateLimiter:
    return RateLimiter(RedisRateLimitStore(client, keys), refresh_interval, errors=ERRORS)


@pytest.fixture
def limiter(redis_url: str) -> RateLimiter:
    return _limiter(redis.Redis.from_url(redis_url), Keys())


def bucket(name: str) -> str:
    return Keys().rate_bucket(name)


# -- parse_rate ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/s", 100.0),
        ("10/m", 10 / 60),
        ("500/h", 500 / 3600),
        ("20", 20.0),
        ("2.5/s", 2.5),
        (".5/s", 0.5),
        (" 30 / M ", 0.5),
        (20, 20.0),
        (0.25, 0.25),
    ],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", [None, "", "  ", "0", "0/s", "0/m", 0, 0.0])
def test_parse_rate_unlimited(text):
    assert parse_rate(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "fast",
        "10/d",
        "10/sec",
        "10/min",
        "10/hour",
        "-1",
        "-5/s",
        "1e3",
        "/s",
        "10/",
        "10//s",
        "inf",
        "nan",
        "10 per second",
    ],
)
def test_parse_rate_rejects_bad_strings_naming_them(text):
    with pytest.raises(ValueError, match="invalid rate limit") as info:
        parse_rate(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), True, ["10/s"]])
def test_parse_rate_rejects_bad_values(value):
    with pytest.raises(ValueError, match="invalid rate limit"):
        parse_rate(value)


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (20.0, "20/s"),
        (10 / 60, "10/m"),
        (500 / 3600, "500/h"),
        (0.5, "30/m"),
        (2.5, "150/m"),
        (1 / 7, "8.57143/m"),
        (1e-4, "0.36/h"),
        (None, "off"),
    ],
)
def test_format_rate(rate, text):
    assert format_rate(rate) == text


def test_burst_is_one_second_of_tokens_and_at_least_one():
    assert burst_for(100.0) == 100.0
    assert burst_for(10 / 60) == 1.0


# -- the bucket ------------------------------------------------------------------------------
def test_bucket_grants_a_burst_then_tells_the_wait(limiter, r):
    assert [limiter.acquire("t", 5.0) for _ in range(5)] == [0.0] * 5
    wait = limiter.acquire("t", 5.0)
    assert 0.1 < wait <= 0.2  # one token per 0.2 s, less the time the calls took
    assert limiter.acquire("t", 5.0) > 0  # a refusal takes nothing
    assert set(r.hgetall(bucket("t"))) == {"tokens", "ts"}
    # Idle, it refills in 1 s; the key lives until then and two bucket-lengths more.
    assert 0 < r.pttl(bucket("t")) <= 3000

    wait_until(lambda: limiter.acquire("t", 5.0) == 0.0, timeout=2, message="a new token")
    assert limiter.acquire("t", 5.0) > 0


def test_slow_rates_start_with_one_token(limiter):
    assert limiter.acquire("slow", 10 / 60) == 0.0
    assert limiter.acquire("slow", 10 / 60) == pytest.approx(6.0, abs=0.2)
    assert limiter.acquire("hourly", 500 / 3600) == 0.0
    assert limiter.acquire("hourly", 500 / 3600) == pytest.approx(7.2, abs=0.2)


def test_buckets_are_per_task(limiter):
    assert limiter.acquire("a", 1.0) == 0.0
    assert limiter.acquire("a", 1.0) > 0
    assert limiter.acquire("b", 1.0) == 0.0


def test_acquire_rejects_a_rate_that_is_not_positive(limiter):
    for rate in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="positive"):
            limiter.acquire("t", rate)


def test_two_workers_share_one_bucket(redis_url):
    first = _limiter(redis.Redis.from_url(redis_url), Keys())
    second = _limiter(redis.Redis.from_url(redis_url, decode_responses=True), Keys())
    assert [first.acquire("shared", 3.0) for _ in range(3)] == [0.0] * 3
    assert second.acquire("shared", 3.0) > 0


def test_grants_over_a_window_are_bounded_by_the_rate_whatever_the_workers(redis_url):
    rate, window = 20.0, 1.0
    limiters = [_limiter(redis.Redis.from_url(redis_url), Keys()) for _ in range(4)]
    grants = [0] * len(limiters)
    calls = [0] * len(limiters)
    start = time.monotonic()

    def work(i: int) -> None:
        while time.monotonic() - start < window:
            calls[i] += 1
            wait = limiters[i].acquire("busy", rate)
            if wait == 0:
                grants[i] += 1
            else:  # pacing only: the bucket decides, not this sleep
                time.sleep(min(wait, 0.01))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(limiters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = sum(grants)
    assert all(calls), calls
    # At most a burst (one second's worth) plus the refill over the window, with slack
    # for the time between the last check of the clock and the last call.
    assert rate <= total <= burst_for(rate) + rate * elapsed + 2, (grants, elapsed)
    assert sum(calls) > total  # they were refused too: the limit held them back


def test_a_waiting_task_books_its_own_slot(limiter, r):
    for _ in range(10):
        assert limiter.acquire("t", 10.0, task_id="x") == 0.0  # no booking when granted
    waits = [limiter.acquire("t", 10.0, task_id=i) for i in ("a", "b", "c")]
    # Each slot is 0.1 s after the one before (less the time between the calls).
    assert 0 < waits[0] <= 0.11
    assert 0.05 < waits[1] - waits[0] <= 0.1001
    assert 0.05 < waits[2] - waits[1] <= 0.1001
    assert {"r:a", "r:b", "r:c"} <= set(r.hgetall(bucket("t")))
    # Asking again before the slot: the time left, and no second booking.
    again = limiter.acquire("t", 10.0, task_id="a")
    assert 0 < again <= waits[0]
    # Without an id, a newcomer queues behind the booked slots.
    assert limiter.acquire("t", 10.0) > waits[2] - 0.05

    wait_until(lambda: limiter.acquire("t", 10.0, task_id="a") == 0.0, timeout=2, message="slot a")
    assert r.hget(bucket("t"), "r:a") is None
    assert limiter.acquire("t", 10.0, task_id="c") > 0  # c's slot is later
    wait_until(lambda: limiter.acquire("t", 10.0, task_id="c") == 0.0, timeout=2, message="slot c")
    # b's slot has passed too: granted without a new token.
    assert limiter.acquire("t", 10.0, task_id="b") == 0.0


def test_booked_slots_spread_a_backlog_at_the_rate(limiter):
    waits = [limiter.acquire("t", 50.0, task_id=str(i)) for i in range(150)]
    assert waits[:50] == [0.0] * 50  # the burst
    booked = [w for w in waits if w > 0]
    assert len(booked) >= 95  # (a few tokens may refill while the calls run)
    assert 0 < booked[0] < booked[-1]
    assert 1.7 < booked[-1] <= 2.0  # the 100th of them waits 2 s at 50/s


# -- overrides ---------------------------------------------------------------------------
def test_effective_rate_is_the_override_else_the_tasks_own(redis_url, r):
    worker = _limiter(redis.Redis.from_url(redis_url), Keys(), refresh_interval=0.05)
    cli = _limiter(redis.Redis.from_url(redis_url), Keys())
    assert worker.effective_rate("t", "5/s") == 5.0
    assert worker.effective_rate("t", None) is None
    assert worker.effective_rate("u", 2) == 2.0

    assert cli.set_rate("t", "20/s") == 20.0
    assert r.hget("taskq:ratelimits", "t") == "20/s"
    wait_until(lambda: worker.effective_rate("t", "5/s") == 20.0, timeout=2, message="the override")
    assert worker.effective_rate("t", None) == 20.0  # also for a task declared without one

    assert cli.set_rate("t", "off") is None
    assert r.hexists("taskq:ratelimits", "t") == 0
    wait_until(
        lambda: worker.effective_rate("t", "5/s") == 5.0, timeout=2, message="the override removed"
    )


@pytest.mark.parametrize("off", ["off", "none", "OFF", "0", "", None])
def test_set_rate_off_deletes_the_override(limiter, r, off):
    limiter.set_rate("t", "3/m")
    assert limiter.overrides() == {"t": "3/m"}
    assert limiter.set_rate("t", off) is None
    assert limiter.overrides() == {}


def test_set_rate_validates_first(limiter, r):
    limiter.set_rate("t", "3/m")
    with pytest.raises(ValueError, match="'fast'"):
        limiter.set_rate("t", "fast")
    assert r.hget("taskq:ratelimits", "t") == "3/m"
    with pytest.raises(ValueError, match="task name"):
        limiter.set_rate("", "3/m")


def test_overrides_are_read_once_per_refresh_interval(redis_url, r):
    client = redis.Redis.from_url(redis_url)
    reads = []
    real_hgetall = client.hgetall
    client.hgetall = lambda key: reads.append(key) or real_hgetall(key)
    worker = _limiter(client, Keys(), refresh_interval=60)
    for _ in range(1000):
        assert worker.effective_rate("t", None) is None
    assert reads == ["taskq:ratelimits"]
    r.hset("taskq:ratelimits", "t", "1/s")
    assert worker.effective_rate("t", None) is None  # cached
    worker.reload()
    assert worker.effective_rate("t", None) == 1.0


def test_a_bad_override_in_redis_is_ignored(limiter, r, caplog):
    r.hset("taskq:ratelimits", mapping={"t": "fast", "u": "2/s"})
    assert limiter.effective_rate("t", "5/s") == 5.0
    assert limiter.effective_rate("u", "5/s") == 2.0
    assert "Ignoring the runtime rate limit of t" in caplog.text


def test_overrides_keep_their_last_value_while_redis_is_away(redis_url):
    client = redis.Redis.from_url(redis_url)
    limiter = _limiter(client, Keys(), refresh_interval=0)
    limiter.set_rate("t", "7/s")
    limiter.store = RedisRateLimitStore(redis.Redis(port=1, socket_connect_timeout=0.2), Keys())
    assert limiter.effective_rate("t", "5/s") == 7.0


def test_a_bad_declared_rate_raises(limiter):
    with pytest.raises(ValueError, match="'often'"):
        limiter.effective_rate("t", "often")


def test_key_prefix_is_honoured(redis_url, r):
    limiter = _limiter(redis.Redis.from_url(redis_url), Keys("other"))
    limiter.set_rate("t", "1/s")
    limiter.acquire("t", 1.0)
    assert r.hget("other:ratelimits", "t") == "1/s"
    assert r.exists("other:ratelimit:{t}")


# -- flask taskq rate-limit --------------------------------------------------------------
def invoke(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["taskq", "rate-limit", *args])


def test_cli_sets_lists_and_clears(app, r):
    result = invoke(app)
    assert result.exit_code == 0, result.output
    assert "No rate limits set at runtime" in result.output

    result = invoke(app, ADD, "20/s")
    assert result.exit_code == 0, result.output
    assert result.output == f"Rate limit of {ADD} set to 20/s for all workers.\n"
    assert r.hget("taskq:ratelimits", ADD) == "20/s"

    invoke(app, "tests.apps.basic.noop", "1200/m")
    result = invoke(app)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{ADD}   20/s",
        "tests.apps.basic.noop  1200/m (20/s)",
    ]

    result = invoke(app, ADD)
    assert result.output == f"{ADD}: 20/s (set at runtime; no rate limit declared)\n"

    result = invoke(app, ADD, "off")
    assert result.exit_code == 0, result.output
    assert result.output == f"Removed the runtime rate limit of {ADD}: it has no limit now.\n"
    assert not r.hexists("taskq:ratelimits", ADD)
    assert invoke(app, ADD).output == f"{ADD}: no rate limit\n"


def test_cli_rejects_a_bad_rate_in_one_line(app, r):
    result = invoke(app, ADD, "fast")
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "Error: invalid rate limit 'fast': expected N/s, N/m or N/h (per second, minute or "
        "hour) or a plain number (per second), e.g. '10/s'"
    ]
    assert not r.exists("taskq:ratelimits")


def test_cli_allows_unknown_tasks_with_a_note(app, r):
    result = invoke(app, "elsewhere.task", "5/m")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Rate limit of elsewhere.task set to 5/m for all workers.\n"
    assert "Note: no task named 'elsewhere.task' is registered in this app." in result.stderr
    assert r.hget("taskq:ratelimits", "elsewhere.task") == "5/m"
    assert "Note" not in invoke(app, ADD, "5/m").output


def test_cli_shows_the_declared_limit(redis_url, r):
    app = Flask("declared")
    app.config["TASKQ_BROKER_URL"] = redis_url
    tq = TaskQueue(app)

    @tq.task(name="mail.send", rate_limit="10/s")
    def send():
        return None

    assert invoke(app, "mail.send").output == "mail.send: 10/s (declared)\n"
    invoke(app, "mail.send", "2/s")
    assert invoke(app).output == "mail.send  2/s  (declared: 10/s)\n"
    assert invoke(app, "mail.send").output == "mail.send: 2/s (set at runtime; declared 10/s)\n"
    result = invoke(app, "mail.send", "off")
    assert result.output == (
        "Removed the runtime rate limit of mail.send: its declared 10/s applies again.\n"
    )


def test_cli_with_redis_unreachable_is_one_line(app):
    state = app.extensions["taskq"]
    state.broker_url = "redis://127.0.0.1:1/0"
    state.broker = state.new_broker()
    result = invoke(app, ADD, "5/s")
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: cannot reach Redis at redis://127.0.0.1:1/0")
    assert len(result.output.strip().splitlines()) == 1


def test_cli_on_memory_sets_the_limit_in_this_process():
    app = Flask("memory")
    app.config["TASKQ_BROKER_URL"] = "memory://"
    TaskQueue(app)
    result = invoke(app, ADD, "5/s")
    assert result.exit_code == 0, result.output
    assert app.extensions["taskq"].store.rate_limits.overrides() == {ADD: "5/s"}


def test_limit_holds_across_two_workers_with_two_threads_each(
    redis_url, start_worker, r, monkeypatch
):
    """20 tasks at 5/s (burst 5) over 2 x 2 threads: the last starts >= 3 s after the
    first, and no second holds more than burst + rate starts."""
    from tests.apps import control

    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    capp = control.create_app()
    for _ in range(2):
        start_worker("-P", "threads", "-c", "2", app="tests.apps.control:create_app")
    with capp.app_context():
        results = [control.limited.delay(f"t{i}") for i in range(20)]
        assert sorted(res.get(timeout=30) for res in results) == sorted(f"t{i}" for i in range(20))
    starts = sorted(float(t) for t in r.hvals("ctl:limited_at"))
    assert len(starts) == 20
    assert starts[-1] - starts[0] >= 2.9
    for first in starts:
        assert sum(first <= s < first + 1.0 for s in starts) <= 10


def test_runtime_override_applies_to_running_workers(redis_url, start_worker, r, monkeypatch):
    from tests.apps import control

    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    capp = control.create_app()
    result = capp.test_cli_runner().invoke(
        args=["taskq", "rate-limit", "tests.apps.control.record", "2/s"]
    )
    assert result.exit_code == 0, result.output
    start_worker("-P", "threads", "-c", "2", app="tests.apps.control:create_app")
    with capp.app_context():
        for res in [control.record.delay(f"o{i}") for i in range(6)]:
            res.get(timeout=30)
    starts = sorted(float(t) for t in r.hvals("ctl:started_at"))
    assert starts[-1] - starts[0] >= 1.9  # burst 2, then 2/s for the other 4
