"""The status page as static files, so a copy hosted elsewhere stays up when we are down.

`export(app, directory)` renders every public page and document through the app itself (the
same bytes a visitor gets) with links rewritten to sibling files. `publish(app, settings)` pushes
an export to the storage backend under STATUS_EXPORT_PREFIX, uploading only files whose content
changed since the last push (their hashes are kept in `<prefix>/manifest.json`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
from pathlib import Path

from sqlalchemy import select

from ..extensions import db
from .models import Incident
from .page import EXPORT_ENVIRON_KEY, Links, history_pages

log = logging.getLogger("controlplane.status")
STATIC_DIR = Path(__file__).parent / "static"
DOCUMENTS = ("api/v2/status.json", "api/v2/summary.json", "api/v2/components.json", "api/v2/incidents.json",
             "api/v2/incidents/unresolved.json", "api/v2/scheduled-maintenances.json",
             "api/v2/scheduled-maintenances/upcoming.json", "api/v2/scheduled-maintenances/active.json",
             "history.atom", "history.rss")
CONTENT_TYPES = {".json": "application/json", ".atom": "application/atom+xml", ".rss": "application/rss+xml",
                 ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8", ".css": "text/css",
                 ".js": "text/javascript"}


class ExportError(RuntimeError):
    pass


def _routes(app) -> list[tuple[str, str]]:
    """(file name, route) of everything the static copy holds."""
    with app.app_context():
        incident_ids = list(db.session.execute(select(Incident.id).order_by(Incident.id)).scalars())
        components = [c.id for c in app.extensions["controlplane.health"].config.components]
    files = Links(exported=True)  # the names the exported pages link to
    routes = [(files.status(), "/status")]
    routes += [(files.history(n), f"/history?page={n}") for n in range(1, history_pages(len(incident_ids)) + 1)]
    routes += [(files.incident(i), f"/incidents/{i}") for i in incident_ids]
    routes += [(path, f"/{path}") for path in DOCUMENTS]
    for component in components:
        routes += [(f"badges/{component}.svg", f"/badges/{component}.svg"),
                   (f"badges/{component}/uptime.svg", f"/badges/{component}/uptime.svg?days=90")]
    return routes


def render_files(app) -> dict[str, bytes]:
    """Every file of the static copy, in memory (a few hundred kilobytes)."""
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    # Past the request-telemetry middleware: our own renders are not traffic, and must not show in
    # the request metrics, the alert indicators or the page's own response-time chart.
    client = Client(getattr(app.wsgi_app, "wsgi_app", app.wsgi_app), Response)
    files = {}
    for name, route in _routes(app):
        answer = client.get(route, environ_base={EXPORT_ENVIRON_KEY: True, "REMOTE_ADDR": "127.0.0.1"})
        if answer.status_code != 200:
            raise ExportError(f"{route} answered {answer.status_code}: {answer.get_data(as_text=True)[:200]}")
        files[name] = answer.get_data()
    for asset in sorted(STATIC_DIR.iterdir()):
        files[asset.name] = asset.read_bytes()
    return files


def export(app, directory: Path) -> list[str]:
    """Write the static copy into `directory` (created if needed); returns the files written."""
    files = render_files(app)
    for name, data in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)  # a web server reading the directory never sees half a file
    return sorted(files)


def content_type(name: str) -> str:
    suffix = Path(name).suffix
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def publish(app, settings) -> int:
    """Push what changed to `<STATUS_EXPORT_PREFIX>/` in the backup storage; returns files uploaded."""
    from ..backups.storage import StorageError, storage_for

    prefix = settings.status_export_prefix
    storage = storage_for(settings)
    manifest_key = f"{prefix}/manifest.json"
    try:
        previous = json.loads(b"".join(storage.open(manifest_key)))
    except (StorageError, ValueError):
        previous = {}
    files = render_files(app)
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    changed = [name for name in files if previous.get(name) != digests[name]]
    for name in changed:
        storage.put(f"{prefix}/{name}", [files[name]], content_type=content_type(name))
    if changed:
        storage.put(manifest_key, [json.dumps(digests, sort_keys=True).encode()], content_type="application/json")
        log.info("status page published", extra={"uploaded": len(changed), "where": storage.describe()})
    return len(changed)
