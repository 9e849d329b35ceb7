"""The composition root: the one place that reads settings and picks implementations."""
