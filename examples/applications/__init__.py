"""Applications on top of ``rotation.client`` (README, "Applications"): the snippets the README
shows, run against real servers through rotations by tests/integration/test_client.py."""
