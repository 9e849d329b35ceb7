"""The event store: eventsourcing applications, persistence config and the notification reader."""
