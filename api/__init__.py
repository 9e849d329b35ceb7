"""The HTTP command API (issue 4)."""
