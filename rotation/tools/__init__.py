"""The laptop side: the ``rotation`` command line, ``doctor``, ``demo``, the local service
driver and the throwaway database servers. Installed with the project; never imported by the
runtime (the function package leaves this folder out; tests/unit/test_layout.py checks both)."""
