"""Alembic migrations for the gateway's schema (run with ``await Database.migrate()``)."""
