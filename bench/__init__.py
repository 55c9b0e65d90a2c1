"""flask-taskq benchmarks: ``bench/throughput.py`` and the app its workers run (``bench.app``)."""
