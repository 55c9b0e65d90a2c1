"""Every Redis key flask-taskq uses, built in one place; ``docs/data-model.rst`` lists them.

Braces are part of the names: they are Redis Cluster hash tags, so that the keys one Lua
script touches together share a slot. A queue's keys (streams, delayed set, dead letters,
start counters, chord-fired marks) carry ``{<queue>}``; a result, its waiting and done
lists ``{<task id>}``; chord results, a saved group and a workflow's keys their own id; a
rate-limit bucket ``{<task>}``; the beat keys ``{beat}``; the recent failures
``{failures}``. ``queues``, ``ratelimits``, ``revoked``, ``unique``, the heartbeats,
``stats``, ``paused``, ``events`` and ``workflows`` have none, each command touching one
of them. On a Redis Cluster, scripts over several queues run once per slot and a unique
lock is taken on its own (``docs/scaling.rst``), so every script touches one slot.
A sharded queue (``TASKQ_QUEUE_SHARDS``) is several queues ``<queue>``, ``<queue>~1``, ...,
each with its own keys and tag.
"""

from __future__ import annotations

PRIORITIES = range(9, -1, -1)  # highest first
DEFAULT_PRIORITY = 5
GROUP = "workers"  # the consumer group every worker joins


class Keys:
    """Key builder for one ``TASKQ_KEY_PREFIX``."""

    def __init__(self, prefix: str = "taskq") -> None:
        self.prefix = prefix

    def stream(self, queue: str, priority: int) -> str:
        """Stream holding ready messages of ``queue`` at ``priority`` (0-9)."""
        return f"{self.prefix}:{{{queue}}}:p{priority}"

    def streams(self, queue: str) -> list[str]:
        """The ten priority streams of ``queue``, highest priority first."""
        return [self.stream(queue, p) for p in PRIORITIES]

    def delayed(self, queue: str) -> str:
        """Sorted set of messages waiting for their ETA (score = due unix time)."""
        return f"{self.prefix}:{{{queue}}}:delayed"

    def starts(self, queue: str, entry_id: str) -> str:
        """Counter of how often a redelivered message was started (poison detection)."""
        return f"{self.prefix}:{{{queue}}}:starts:{entry_id}"

    def parked(self, consumer: str) -> str:
        """Hash of the long tasks a consumer parked in the delayed sets before RabbitMQ's
        ``consumer_timeout`` (message id -> queue and member), so that a prefork
        supervisor can renew them for its children."""
        return f"{self.prefix}:parked:{consumer}"

    def queues(self) -> str:
        """Set of the names of the queues workers have served (each worker adds its
        queues when it starts; sending a message does not add to it)."""
        return f"{self.prefix}:queues"

    def result(self, task_id: str) -> str:
        """String holding a task's result document (state, result, ...), encoded by
        ``TASKQ_SERIALIZER``."""
        return f"{self.prefix}:result:{{{task_id}}}"

    def done(self, task_id: str) -> str:
        """List that receives one element when a task reaches a ready state while
        someone waits for it (see :meth:`waiting`)."""
        return f"{self.prefix}:result:{{{task_id}}}:done"

    def waiting(self, task_id: str) -> str:
        """List to which a caller of ``AsyncResult.get()`` adds a token before it blocks
        (expires a little after its block): the worker moves a token onto the done list
        when it writes the final state, which wakes the waiters."""
        return f"{self.prefix}:result:{{{task_id}}}:waiting"

    def seen(self, task_id: str) -> str:
        """String ``<attempt> <stream> <entry id>``: where the latest attempt of a task
        started, written just before it runs when ``TASKQ_SIGNING_KEY`` is set, so that a
        replayed copy of its signed body is refused; expires after TASKQ_RESULT_EXPIRES.
        Same hash tag as the task's result keys."""
        return f"{self.prefix}:seen:{{{task_id}}}"

    def dead(self, queue: str) -> str:
        """Stream of ``queue``'s dead letters: messages that could not be run, with why."""
        return f"{self.prefix}:{{{queue}}}:dead"

    def dead_bytes(self, queue: str) -> str:
        """String: the size in bytes of ``queue``'s dead-letter store (the lengths of its
        entries' field names and values), kept by the scripts that add and remove dead
        letters; the store is trimmed, oldest first, to ``TASKQ_DEAD_LETTER_MAX_BYTES``."""
        return f"{self.prefix}:{{{queue}}}:dead:bytes"

    def rate_bucket(self, task: str) -> str:
        """Hash with a task's token bucket (``tokens``, ``ts``), shared by all workers."""
        return f"{self.prefix}:ratelimit:{{{task}}}"

    def rate_limits(self) -> str:
        """Hash of rate limits set at runtime (``flask taskq rate-limit``): task -> rate."""
        return f"{self.prefix}:ratelimits"

    def revoked(self) -> str:
        """Sorted set of revoked task ids, scored by revocation time (trimmed by age)."""
        return f"{self.prefix}:revoked"

    def terminate(self) -> str:
        """Sorted set of revoked task ids whose running instance must be stopped."""
        return f"{self.prefix}:revoked:terminate"

    def unique(self, digest: str) -> str:
        """String holding the id of the waiting/running task that owns a unique key;
        ``digest`` is ``<task>:<key>`` (``flask_taskq.task.unique_key``)."""
        return f"{self.prefix}:unique:{digest}"

    # -- monitoring -------------------------------------------------------------------------
    def worker(self, process: str) -> str:
        """String (JSON) with one consuming process's heartbeat; expires when it stops
        beating."""
        return f"{self.prefix}:worker:{process}"

    def workers(self) -> str:
        """Sorted set of consuming processes scored by their last heartbeat."""
        return f"{self.prefix}:workers"

    def events(self) -> str:
        """Stream of task events (``TASKQ_EVENTS``), capped at ``TASKQ_EVENTS_MAXLEN``."""
        return f"{self.prefix}:events"

    def stats(self, minute: int) -> str:
        """Hash of per-minute counters ``<kind>|<queue>|<task>`` (processed, failed,
        retried, runtime in ms); expires after two hours."""
        return f"{self.prefix}:stats:{minute}"

    def paused(self) -> str:
        """Set of paused queue names: workers stop fetching from them."""
        return f"{self.prefix}:paused"

    def failures(self) -> str:
        """Sorted set of the ids of tasks that recently failed without being
        dead-lettered, scored by the time they failed; trimmed to the newest 1,000.
        Hash tag ``{failures}``, shared with :meth:`failure_records`."""
        return f"{self.prefix}:{{failures}}"

    def failure_records(self) -> str:
        """Hash: task id -> JSON record (task, queue, time, worker, message body) of each
        task in :meth:`failures`, trimmed with it."""
        return f"{self.prefix}:{{failures}}:records"

    # -- beat: every key carries the hash tag {beat}, so one script may touch them all ----
    def beat_lease(self) -> str:
        """String holding the token of the beat that leads (sends due tasks); expires
        unless that beat renews it."""
        return f"{self.prefix}:{{beat}}:lease"

    def beat_entries(self) -> str:
        """Set of the names of the periodic entries beat knows."""
        return f"{self.prefix}:{{beat}}:entries"

    def beat_entry(self, name: str) -> str:
        """Hash with a periodic entry's state: ``schedule``, ``task``, ``since``, ``last``,
        ``run_at``, ``run_due`` (see ``docs/beat.rst``)."""
        return f"{self.prefix}:{{beat}}:entry:{name}"

    def beat_fired(self, name: str, due: str) -> str:
        """String set once when entry ``name`` fires for due time ``due`` (deduplication);
        expires after an hour."""
        return f"{self.prefix}:{{beat}}:fired:{name}:{due}"

    def beat_dynamic(self) -> str:
        """Hash: name -> JSON spec of each periodic entry added at run time
        (``flask taskq periodic``, ``tq.periodic``)."""
        return f"{self.prefix}:{{beat}}:dynamic"

    def beat_dynamic_version(self) -> str:
        """Counter raised by every change of :meth:`beat_dynamic`: beats poll it."""
        return f"{self.prefix}:{{beat}}:dynamic:version"

    # -- workflows (docs/workflows.rst) ------------------------------------------------------
    def chord_results(self, chord_id: str) -> str:
        """Hash of a chord's finished members: index -> encoded return value; the chord
        is complete when it holds as many fields as the chord has members."""
        return f"{self.prefix}:chord:{{{chord_id}}}:results"

    def chain_steps(self, chain_id: str) -> str:
        """List of the encoded steps after the first of a long chain (``chain_id``: its
        first task's id); each worker reads the step it sends next. Expires with the
        results."""
        return f"{self.prefix}:chain:{{{chain_id}}}:steps"

    def chord_fired(self, queue: str, chord_id: str) -> str:
        """String set once when a chord's callback was sent (or the chord failed); under
        the callback queue's hash tag so it is set in the same script as the send."""
        return f"{self.prefix}:{{{queue}}}:chord-fired:{chord_id}"

    def group_result(self, group_id: str) -> str:
        """String (JSON) with the member task ids of a saved ``GroupResult``."""
        return f"{self.prefix}:group:{{{group_id}}}"

    def workflow(self, workflow_id: str) -> str:
        """String (JSON) with a workflow's shape: its nodes (task ids and names) in tree
        form and its edges, written once when the workflow is sent; ``workflow_id`` is the
        id of the result the sender got back. Expires with the results."""
        return f"{self.prefix}:workflow:{{{workflow_id}}}"

    def workflow_canvas(self, workflow_id: str) -> str:
        """String: the workflow as it was sent (its canvas, ids fixed, encoded by
        ``TASKQ_SERIALIZER``), kept beside :meth:`workflow` so that its failed steps can be
        run again; same hash tag, same expiry."""
        return f"{self.prefix}:workflow:{{{workflow_id}}}:canvas"

    def workflow_of(self, task_id: str) -> str:
        """String holding the id of the workflow a task (or group) belongs to; expires
        with the results."""
        return f"{self.prefix}:workflow-of:{{{task_id}}}"

    def workflows(self) -> str:
        """Sorted set of the most recent workflow ids, scored by the time they were sent
        (capped; the dashboard lists it)."""
        return f"{self.prefix}:workflows"

    # -- per-key concurrency limits (docs/concurrency.rst): hash tag {<task>:<key>} ----
    def concurrency(self, key: str) -> list[str]:
        """The five keys of concurrency key ``key`` (``<task>:<key value>``), in the order
        ``concurrency.lua`` takes them: ``holders`` (sorted set: task id -> lease expiry
        in ms), ``waiting`` (sorted set of parked task ids by arrival), ``waking`` (sorted
        set: woken task id -> claim expiry), ``parked`` (hash: task id -> queue, priority
        and body of a parked message), ``limit`` (string)."""
        base = f"{self.prefix}:concurrency:{{{key}}}"
        return [f"{base}:{part}" for part in ("holders", "waiting", "waking", "parked", "limit")]

    def concurrency_keys(self) -> str:
        """Sorted set of the concurrency keys seen at their limit (key -> how often), so
        that workers find the ones to wake and ``inspect`` lists them; an idle key is
        dropped."""
        return f"{self.prefix}:concurrency-keys"
