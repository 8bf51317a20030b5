"""WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py controlplane.wsgi:app`."""
from . import create_app
from .database import install_answer_deadline

app = create_app()
# Only a serving process waits on PostgreSQL with a deadline; CLI commands build apps too.
install_answer_deadline(app.extensions["controlplane.settings"])
