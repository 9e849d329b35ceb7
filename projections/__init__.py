"""Projections: event -> view changes, and the runner that feeds them in order with a position."""
