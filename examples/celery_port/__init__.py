"""The shape of Flask's "Background Tasks with Celery" example, on flask-taskq.

An app factory, a module of shared tasks (``tasks.py``) and a blueprint of JSON views that
start them and read their results (``views.py``), plus a page that drives them from the
browser. Moving it from Celery took the imports and the config keys; README.md shows the
diff. Run from the repository root::

    flask --app examples.celery_port taskq worker -l info
    flask --app examples.celery_port run --debug
"""

from __future__ import annotations

from flask import Flask, render_template

from flask_taskq import TaskQueue


def create_app() -> Flask:
    """Build the app. ``FLASK_TASKQ_BROKER_URL`` and ``FLASK_TASKQ_RESULT_BACKEND`` in
    the environment override the Redis on localhost."""
    app = Flask(__name__)
    app.config.from_mapping(
        TASKQ_BROKER_URL="redis://localhost",
        TASKQ_RESULT_BACKEND="redis://localhost",
        TASKQ_TASK_IGNORE_RESULT=True,
    )
    app.config.from_prefixed_env()
    TaskQueue(app)

    @app.get("/")
    def index() -> str:
        return render_template("index.html")

    from . import views

    app.register_blueprint(views.bp)
    return app
