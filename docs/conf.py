"""Sphinx configuration for the flask-taskq documentation.

Build with ``make docs`` (``sphinx-build -q -W -b html docs docs/_build/html``).
Only the built-in alabaster theme and ``sphinx.ext.autodoc`` are used.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import flask_taskq  # noqa: E402

project = "flask-taskq"
author = "flask-taskq developers"
copyright = "flask-taskq developers"
version = release = flask_taskq.__version__

extensions = ["sphinx.ext.autodoc"]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}

html_theme = "alabaster"
html_theme_options = {
    "description": "A Flask extension with a distributed task queue built in",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
