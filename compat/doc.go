// Package compat holds the Python compatibility suite: its tests drive the
// Python services' own libraries (pydantic v2, SQLAlchemy 2, psycopg 3; the
// Python sources are in compat/python) against this module, over JSON on
// stdin and stdout, with real PostgreSQL and Kafka. They prove that
//
//   - every envelope Go writes validates with the services' EventEnvelope, and
//     every envelope pydantic writes decodes with outbox.DecodeEnvelope;
//   - rows the services' SQLAlchemy writer adds are published by the relay
//     with their topic, key and bytes;
//   - migrations.Up adopts the table the services' SQLAlchemy model created.
//
// The interpreter is OUTBOX_PYTHON, or the virtualenv that
// scripts/python-env.sh builds (make python-env). Without it the tests skip,
// and fail when CI is set. It has no code besides the tests.
package compat
