"""The one outbound client to Postal. Transports: `http` (a real Postal) and `sink` (local files)."""
from .client import PostalClient, PostalRejected, PostalUnavailable, postal_client

__all__ = ["PostalClient", "PostalRejected", "PostalUnavailable", "postal_client"]
