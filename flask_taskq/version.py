"""The version of flask-taskq: the one place it is written (pyproject.toml reads it from
here, ``flask_taskq.__version__`` and the dashboard show it)."""

__version__ = "0.2.0"
