"""The running build's identity, reported by /health, /metrics and Sentry."""
import os
from importlib import metadata

try:
    VERSION = metadata.version("mailgoat-controlplane")
except metadata.PackageNotFoundError:  # running from a tree that was never installed
    VERSION = "0.0.0+unknown"

# Set by the Dockerfile / deploy pipeline; "unknown" on a developer machine.
COMMIT = os.environ.get("GIT_COMMIT", "unknown")
