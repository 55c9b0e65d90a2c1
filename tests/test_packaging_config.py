"""Packaging (one version, the licence) and per-app state: config defaults copied per app,
one ``init_app`` per app, ``RedisBroker.close()`` closing every socket it opened."""

from __future__ import annotations

import base64
import importlib.metadata
import sys
import threading
import uuid
from pathlib import Path

import pytest
from flask import Flask

import flask_taskq
from flask_taskq import TaskQueue
from flask_taskq.broker.redis import RedisBroker
from flask_taskq.config import DEFAULTS
from tests.conftest import wait_until

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
NO_REDIS = "redis://127.0.0.1:1/0"


def make_app(name: str, **config: object) -> Flask:
    app = Flask(name)
    app.config["TASKQ_BROKER_URL"] = NO_REDIS
    app.config.update(config)
    return app


# -- packaging --------------------------------------------------------------------------------
def test_version_is_the_installed_distributions():
    installed = importlib.metadata.version("flask-taskq")
    assert flask_taskq.__version__ == installed, (
        f"flask_taskq.__version__ is {flask_taskq.__version__} but the installed metadata says "
        f"{installed}: reinstall (pip install -e .) after changing the version"
    )


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11+")
def test_pyproject_reads_the_version_and_licence_from_one_place_each():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "flask_taskq.version.__version__"
    }
    assert project["project"]["license"] == "BSD-3-Clause"
    assert project["project"]["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("BSD 3-Clause License")
    assert "flask-taskq developers" in licence
    # An SPDX string in project.license is read by setuptools 77 and later only.
    assert "setuptools>=77" in project["build-system"]["requires"]


def test_dashboard_footer_shows_the_version(redis_url):
    tq = TaskQueue()
    app = make_app(
        "pack-dash",
        TASKQ_BROKER_URL=redis_url,
        TASKQ_DASHBOARD=True,
        SECRET_KEY="test",
        TASKQ_DASHBOARD_AUTH=("u", "p"),
    )
    tq.init_app(app)
    auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    page = app.test_client().get("/taskq/", headers=auth)
    assert page.status_code == 200
    assert f"flask-taskq {flask_taskq.__version__}" in page.text


# -- config defaults --------------------------------------------------------------------------
def test_two_apps_do_not_share_mutable_defaults():
    tq = TaskQueue()
    one, two = make_app("one"), make_app("two")
    tq.init_app(one)
    tq.init_app(two)

    one.config["TASKQ_BEAT_SCHEDULE"]["ping"] = {"task": "pack.ping", "schedule": 30}
    one.config["TASKQ_ROUTES"]["pack.*"] = "mail"

    assert set(tq.periodic_entries(one)) == {"ping"}
    assert tq.periodic_entries(two) == {}
    assert two.config["TASKQ_ROUTES"] == {}
    assert DEFAULTS["TASKQ_BEAT_SCHEDULE"] == {} and DEFAULTS["TASKQ_ROUTES"] == {}
    for key, default in DEFAULTS.items():
        if isinstance(default, (dict, list, set)):
            assert one.config[key] is not two.config[key] is not default, key


def test_an_apps_own_setting_is_kept_as_given():
    schedule = {"ping": {"task": "pack.ping", "schedule": 30}}
    app = make_app("own", TASKQ_BEAT_SCHEDULE=schedule)
    TaskQueue(app)
    assert app.config["TASKQ_BEAT_SCHEDULE"] is schedule


# -- init_app ---------------------------------------------------------------------------------
def test_a_second_init_app_on_the_same_app_raises():
    tq = TaskQueue()
    app = make_app("twice")
    tq.init_app(app)
    state = app.extensions["taskq"]

    with pytest.raises(RuntimeError, match="'twice' already has a TaskQueue"):
        tq.init_app(app)
    with pytest.raises(RuntimeError, match="already has a TaskQueue"):
        TaskQueue(app)
    assert app.extensions["taskq"] is state


# -- RedisBroker.close ------------------------------------------------------------------------
def test_close_closes_the_direct_connections_of_every_thread(redis_url, r):
    name = f"taskq-close-{uuid.uuid4().hex[:12]}"
    broker = RedisBroker(f"{redis_url}?client_name={name}")
    assert broker.direct.enabled

    def named() -> int:
        return sum(1 for c in r.client_list() if c.get("name") == name)

    sent, stop = threading.Barrier(4), threading.Event()

    def send() -> None:
        broker.enqueue("pack", 5, b"{}")
        sent.wait(timeout=10)
        stop.wait(timeout=30)

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        broker.enqueue("pack", 5, b"{}")  # this thread's direct connection
        broker.client.ping()  # and one from the client's pool
        sent.wait(timeout=10)
        assert named() == 5

        broker.close()
        wait_until(
            lambda: named() == 0, timeout=5, message=f"every connection named {name} to close"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert r.xlen("taskq:{pack}:p5") == 4
    broker.enqueue("pack", 5, b"{}")  # a closed broker's thread reconnects if used again
    assert r.xlen("taskq:{pack}:p5") == 5
    broker.close()
