"""WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py controlplane.wsgi:app`."""
from . import create_app

app = create_app()
