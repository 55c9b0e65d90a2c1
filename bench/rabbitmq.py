"""flask-taskq and Celery, each on Redis and on RabbitMQ (issue 16). From the repo root:

    .venv/bin/python bench/rabbitmq.py [compare.py options: --n 2000 --runs 1 ...]

The RabbitMQ rows are part of bench/compare.py now (its second table: single and bulk
enqueue, drain by one and two worker processes, start latency, with a private vhost per
measurement); this runs ``compare.py --only ours,celery --no-write`` with the options
given, and prints both tables. docs/performance.md is written by a full ``compare.py`` run
of all systems, never by this shortcut.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import compare  # noqa: E402

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "--only", "ours,celery", "--no-write", *sys.argv[1:]]
    compare.main()
