"""Documents: registered, and retracted."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from domain.document import Document
from event_store.reader import LoggedEvent
from projections.relational.batch import Rows


class DocumentRows(Rows):
    def apply(self, logged: LoggedEvent, did: str, conn: Connection) -> None:
        event = logged.event
        match event:
            case Document.Registered():
                self._batch.insert(
                    self.t.documents,
                    {
                        "id": did,
                        "source_uri": event.source_uri,
                        "title": event.title,
                        "content_type": event.content_type,
                        "sha256": event.sha256,
                        "size_bytes": event.size_bytes,
                        "status": "registered",
                        "blob_key": event.blob_key,
                        "retraction_reason": None,
                        "retracted_at": None,
                        "registered_at": event.timestamp,
                        "updated_at": event.timestamp,
                    },
                )
                return
            case Document.Retracted():
                changes: dict[str, Any] = {
                    "status": "retracted",
                    "retraction_reason": event.reason,
                    "retracted_at": event.timestamp,
                }
            case _:
                # Entity extractions are the graph view's; whether a view indexed a document
                # is that view's state.
                return
        self._batch.update(conn, self.t.documents, did, updated_at=event.timestamp, **changes)
