"""Events: the event log, subscriber webhooks and their fan-out."""
