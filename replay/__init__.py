"""The audit and replay CLI (``janus``)."""
