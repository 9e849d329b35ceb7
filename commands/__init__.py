"""Command models (imperative verbs) and the services that run them: load, decide, save."""
