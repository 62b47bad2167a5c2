"""Examples that ship with the framework (see docs/writing-an-adapter.md)."""
