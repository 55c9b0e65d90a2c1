"""Adapters for ``bench/compare.py``: one module per system, all with the same tasks.

Each ``<system>_app`` module defines ``noop`` (no result kept), ``noop_result`` (result
stored) and ``stamp(sent)`` (start latency), all three built on :mod:`bench.peers.counting`,
so every system is counted by the same code. ``bench.peers.driver`` runs one measurement of
one system and prints one JSON line. These modules must import with nothing but the
system's own package and ``redis`` installed (the peers run in ``bench/.venv-peers``).
"""
