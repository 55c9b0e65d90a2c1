"""Adapters for ``bench/compare.py``: one module per system, all with the same tasks.

Each ``<system>_app`` module defines ``noop`` and ``stamp(sent)`` (start latency) with the
system's default task options, ``noop_ignored`` (no result kept) and ``noop_result``
(result stored), all built on :mod:`bench.peers.counting`, so every system is counted by
the same code. ``bench.peers.driver`` runs one measurement of one system and prints one
JSON line; ``bench.peers.ceiling`` does the same for raw redis-py loops (the ceiling).
These modules must import with nothing but the system's own package and ``redis``
installed (the peers run in ``bench/.venv-peers``).
"""
