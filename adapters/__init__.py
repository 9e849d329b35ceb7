"""Ports (small abstract classes) and their implementations, named after the technology."""
