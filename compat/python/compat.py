"""Command line that the Go compatibility tests (compat/*_test.go) drive.

Each command reads JSON on stdin and writes JSON on stdout:

  validate                 [envelope text, ...] -> for each, {"envelope": ...}
                           with EventEnvelope.model_validate_json's result
                           dumped by model_dump(mode="json"), or {"error": ...}
  dump                     [envelope fields, ...] -> for each, the text a
                           service publishes for an EventEnvelope built from
                           Python values (datetime, UUID) with those fields
  create-table URL TABLE   (no input) the services' table, by SQLAlchemy's DDL
  write URL TABLE          [{"topic", "aggregate_type", "aggregate_id",
                           "envelope": fields}, ...] -> the rows written in one
                           transaction by publish_to_outbox, each with its id,
                           key, topic and the event_data text sent

URL is an SQLAlchemy URL, such as postgresql+psycopg://postgres@127.0.0.1/test.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from envelope import BatchSpellcheckInitiated, EventEnvelope
from outbox import Base, event_outbox_model, publish_to_outbox

Envelope = EventEnvelope[BatchSpellcheckInitiated]


def build(fields: dict[str, Any]) -> Envelope:
    """Build an envelope from JSON fields as a service would from Python
    values: event_timestamp through datetime.fromisoformat (naive when the
    text has no offset), the IDs through UUID."""
    values = dict(fields)
    if "event_timestamp" in values:
        values["event_timestamp"] = datetime.fromisoformat(values["event_timestamp"])
    for name in ("event_id", "correlation_id"):
        if name in values:
            values[name] = UUID(values[name])
    return Envelope(**values)


def validate(texts: list[str]) -> list[dict[str, Any]]:
    results = []
    for text in texts:
        try:
            results.append({"envelope": Envelope.model_validate_json(text).model_dump(mode="json")})
        except ValidationError as e:
            results.append({"error": str(e)})
    return results


def dump(fields: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(build(f).model_dump(mode="json")) for f in fields]


def create_table(url: str, table: str) -> None:
    engine = create_engine(url)
    event_outbox_model(table)
    Base.metadata.create_all(engine)
    engine.dispose()


def write(url: str, table: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    engine = create_engine(url)
    model = event_outbox_model(table)
    with Session(engine) as session, session.begin():
        added = [
            publish_to_outbox(session, model, e["aggregate_type"], e["aggregate_id"], build(e["envelope"]), e["topic"])
            for e in events
        ]
        session.flush()  # the ids come from the server default
        rows = [
            {
                "id": str(row.id),
                "key": row.event_key,
                "topic": row.event_data["topic"],
                # SQLAlchemy's JSON type sends json.dumps of the value.
                "event_data": json.dumps(row.event_data),
            }
            for row in added
        ]
    engine.dispose()
    return rows


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "create-table":
        create_table(*args)
        return
    if command == "validate":
        out: Any = validate(json.load(sys.stdin))
    elif command == "dump":
        out = dump(json.load(sys.stdin))
    elif command == "write":
        out = write(*args, json.load(sys.stdin))
    else:
        sys.exit(f"unknown command {command!r}; see the module doc")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
