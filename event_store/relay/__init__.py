"""The relay: the only writer of the JetStream stream, fed from the notification log in order.

``loop`` follows the log and holds the design notes; ``window`` pipelines the publishes and
takes their acks; ``provenance`` finds the headers' correlation id and traceparent cheaply;
``wakeup`` turns Postgres NOTIFYs into wake-ups; ``status`` is what any process sees of a relay;
``thread`` runs one on its own event loop.
"""
