"""A small PostgreSQL adapter, engine ``example-postgres`` (docs/writing-an-adapter.md).

An installable package: ``pip install ./examples/minimal_postgres`` puts it (and the entry point
that names ``rotation_example_postgres.adapter:MinimalPostgresAdapter``) on ``sys.path`` from any
directory, as a function package or a layer does in Lambda."""
