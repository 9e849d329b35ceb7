"""The relational views: goals, decisions, confirmations, effects, jobs, fires, the audit trail,
documents, trade orders and positions, kept by ``RelationalProjection``.

``tables`` defines them (readers import the live tables from there, by their stable names);
``batch`` is the read-through batch and its COPY writer; ``projection`` routes each event to the
module of its aggregate (``goals``, ``confirmations``, ``jobs``, ``documents``, ``orders``) and
every event to ``audit``.
"""

from projections.relational.projection import RelationalProjection

__all__ = ["RelationalProjection"]
