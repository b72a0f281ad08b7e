"""The services' outbox table and how they write to it, with SQLAlchemy.

``event_outbox_model`` is the services' ``EventOutbox`` model: the table
their Alembic migration creates (``event_outbox``, its ten columns and three
indexes). ``publish_to_outbox`` stores an event as the Essay Lifecycle
Service does: the envelope dumped with ``model_dump(mode="json")``, the topic
added inside it, one row added to the caller's session, so that it commits
with the business transaction.

The services run these with an async session; the rows and the JSON are the
same with the sync one used here.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, func, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from envelope import EventEnvelope


class Base(DeclarativeBase):
    pass


def event_outbox_model(table_name: str = "event_outbox") -> type[Base]:
    """Return the EventOutbox model mapped to table_name.

    The services use the default name; the tests give each run a table of
    its own. Index names follow the table name as the services' do.
    """

    class EventOutbox(Base):
        __tablename__ = table_name
        __table_args__ = (
            Index(
                f"ix_{table_name}_unpublished",
                "published_at",
                "created_at",
                postgresql_where=text("published_at IS NULL"),
            ),
            Index(f"ix_{table_name}_aggregate", "aggregate_type", "aggregate_id"),
            Index(f"ix_{table_name}_event_type", "event_type"),
        )

        id: Mapped[uuid.UUID] = mapped_column(
            postgresql.UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
        )
        aggregate_id: Mapped[str] = mapped_column(String(255))
        aggregate_type: Mapped[str] = mapped_column(String(100))
        event_type: Mapped[str] = mapped_column(String(255))
        event_data: Mapped[dict[str, Any]] = mapped_column(JSON)
        event_key: Mapped[str | None] = mapped_column(String(255))
        created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
        published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
        retry_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
        last_error: Mapped[str | None] = mapped_column(Text)

    return EventOutbox


def publish_to_outbox(
    session: Session,
    model: type[Base],
    aggregate_type: str,
    aggregate_id: str,
    envelope: EventEnvelope[BaseModel],
    topic: str,
) -> Any:
    """Add the envelope to the outbox in session's transaction; return the row."""
    serialized_data = envelope.model_dump(mode="json")
    serialized_data["topic"] = topic
    row = model(
        aggregate_id=aggregate_id,
        aggregate_type=aggregate_type,
        event_type=envelope.event_type,
        event_data=serialized_data,
        event_key=aggregate_id,
    )
    session.add(row)
    return row
