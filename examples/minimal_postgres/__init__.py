"""A small PostgreSQL adapter, engine ``example-postgres`` (docs/writing-an-adapter.md)."""
