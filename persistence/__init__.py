"""Postgres schema, migrations and queries. Knows nothing of Temporal."""
