"""Pure aggregates and events: the facts Janus records (stdlib and eventsourcing.domain only)."""
