"""The transport-seam and store-seam feature tests, run again on a real Redis Cluster: the
tests of ``test_transport_both`` (retries, unique tasks, queue statistics, saved groups),
``test_store_flows`` (chord, group, chain, workflow graphs, beat with two beats) and
``test_store_state`` (rate limits, revocation, monitor, pause, the store concerns), with the
``transport`` fixture pointing at the cluster and real worker processes on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_taskq.keys import Keys
from flask_taskq.redis_common import connect
from flask_taskq.store.redis import RedisStore
from tests import test_store_flows as flows_tests
from tests import test_store_state as state_tests
from tests import test_transport_both as both_tests
from tests.apps import seam_app
from tests.conftest import Transport, WorkerProcess


class ClusterTransport(Transport):
    """The ``transport`` of the feature tests, on the cluster: the worker processes get
    the cluster URL for their broker and results."""

    def worker(self, *args: str, app: str, env: dict[str, str] | None = None) -> None:
        env = {
            **(env or {}),
            "TASKQ_BROKER_URL": self.url,
            "TASKQ_RESULT_BACKEND": self.url,
        }
        super().worker(*args, app=app, env=env)


@pytest.fixture
def transport(
    cluster_url: str,
    start_worker: Callable[..., WorkerProcess],
) -> Transport:
    return ClusterTransport("redis", cluster_url, start_worker)


# -- test_transport_both ------------------------------------------------------------------
@pytest.fixture
def seam(transport: Transport) -> Flask:
    return seam_app.create_app(**transport.config())


def _with(app_fixture: str, test: Callable[..., None]) -> Callable[..., None]:
    """``test`` with its ``app`` argument taken from fixture ``app_fixture``."""

    def run(request: pytest.FixtureRequest, transport: Transport, **_: Any) -> None:
        app = request.getfixturevalue(app_fixture)
        kwargs: dict[str, Any] = {}
        names = test.__code__.co_varnames[: test.__code__.co_argcount]
        for name in names:
            if name == "app":
                kwargs[name] = app
            elif name == "transport":
                kwargs[name] = transport
            else:
                kwargs[name] = request.getfixturevalue(name)
        test(**kwargs)

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


test_retry_until_success = _with("seam", both_tests.test_retry_until_success)
test_unique_send_while_waiting_returns_the_first_id = _with(
    "seam", both_tests.test_unique_send_while_waiting_returns_the_first_id
)
test_queue_stats_and_known_queues = _with("seam", both_tests.test_queue_stats_and_known_queues)
test_group_result_save_and_restore = _with("seam", both_tests.test_group_result_save_and_restore)


# -- test_store_flows -------------------------------------------------------------------------
flows = flows_tests.flows
sent_stamps = flows_tests.sent_stamps
test_chord_callback_gets_every_member_value = (
    flows_tests.test_chord_callback_gets_every_member_value
)
test_a_failed_member_fails_the_chord = flows_tests.test_a_failed_member_fails_the_chord
test_group_get_returns_every_value = flows_tests.test_group_get_returns_every_value
test_chain_passes_each_value_on = flows_tests.test_chain_passes_each_value_on
test_workflow_graph_is_recorded_and_loaded_with_states = (
    flows_tests.test_workflow_graph_is_recorded_and_loaded_with_states
)
test_the_store_fires_a_chord_once_and_keeps_first_values = (
    flows_tests.test_the_store_fires_a_chord_once_and_keeps_first_values
)
test_beat_sends_each_fire_once_from_the_leader = (
    flows_tests.test_beat_sends_each_fire_once_from_the_leader
)


# -- test_store_state -------------------------------------------------------------------------
@pytest.fixture
def state(transport: Transport) -> Flask:
    transport.worker(app=state_tests.APP, env={"TASKQ_RESULT_BACKEND": transport.url})
    return state_tests.create_app(**transport.config())


@pytest.fixture
def store(cluster_url: str) -> Iterator[Any]:
    client = connect(cluster_url)
    yield RedisStore(client, Keys())
    client.close()


for _name in dir(state_tests):
    if _name.startswith("test_"):
        _test = getattr(state_tests, _name)
        argnames = _test.__code__.co_varnames[: _test.__code__.co_argcount]
        globals()[_name] = _with("state", _test) if "app" in argnames else _test
