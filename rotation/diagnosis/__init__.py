"""Preflight checks of one secret's setup, each a small function returning a verdict.

Every check answers ok, warn, fail or skip (with why), says what it saw and, where something is
wrong, what to do. The checks share what earlier ones learned through :class:`Doctor` (the
secret's description, its current credential, the login outcome), so nothing is fetched twice.

Verdicts follow three rules:

* **fail** when the rotation would fail, and also when a check cannot reach a verdict on
  something the rotation needs (a port that accepts TCP but never answers is a failure, not a
  skip).
* **skip** only when the check does not apply (another engine, no login to read with), or when
  an earlier check already failed on the root cause: the skip names that check, so one root
  cause is reported once, and nothing downstream warns about it.
* **warn** for what works today but is weak or will break (TLS off).

Secret values are read into memory only: no check puts a password or a RotationToken in its
result (every detail passes through the redaction registry as a last line of defence), and no
check writes anything.

Part of the runtime, so the deployed function can run the checks from its own seat (a remote
diagnosis, :mod:`rotation.diagnosis.remote`); imported only for a diagnosis event, never on a
rotation step. ``rotation doctor`` (in ``rotation/tools``) runs the same checks from the
caller's machine, and adds what only the caller can read (the function's configuration and
logs) and ``--fix``.
"""

from __future__ import annotations

from rotation.diagnosis.report import STATUSES, CheckResult, DoctorReport, Status
from rotation.diagnosis.run import CHECKS, run_checks
from rotation.diagnosis.state import Check, Doctor

__all__ = ["CHECKS", "STATUSES", "Check", "CheckResult", "Doctor", "DoctorReport", "Status",
           "run_checks"]
