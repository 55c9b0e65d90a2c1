"""Task state names, as in Celery."""

PENDING = "PENDING"
RECEIVED = "RECEIVED"
STARTED = "STARTED"
RETRY = "RETRY"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"

#: States after which a task will not change again.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: Ready states that mean the task did not succeed.
EXCEPTION_STATES = frozenset({FAILURE, REVOKED, RETRY})
