"""The relay: the only writer of the JetStream stream, fed from the notification log in order."""
