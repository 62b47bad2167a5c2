"""The master secret (alternating users, or dual passwords with ``masterarn``): readable, read
the way the function reads it, and its credential logs in."""

from __future__ import annotations

from dataclasses import replace

from rotation.credentials import DbCredentials
from rotation.diagnosis.report import CheckResult, Status, result
from rotation.diagnosis.state import Doctor
from rotation.errors import RotationError
from rotation.secrets import CURRENT


def master_credentials(d: Doctor, master_id: str | None = None) -> DbCredentials | None:
    """A master credential, read the way the function reads ``masterarn`` (RDS's managed master
    secret holds only user and password). Default: ``--master-secret``, else ``masterarn``."""
    if d.current is None or d.state is None:
        return None
    master_id = master_id or d.master_secret_id or d.current.masterarn
    if not master_id:
        return None
    if master_id not in d.masters:
        try:
            d.masters[master_id] = d.step_context(d.state.version_with(CURRENT) or "").master(
                replace(d.current, masterarn=master_id))
        except RotationError as exc:
            d.masters[master_id] = exc
    master = d.masters[master_id]
    return master if isinstance(master, DbCredentials) else None


def check_master_secret(d: Doctor) -> CheckResult:
    """The master secret (``masterarn``, else ``--master-secret``) is readable and its
    credential logs in."""
    name = "master-secret"
    if d.current is None:
        return result(name, "skip", "no usable current credential")
    master_id = d.current.masterarn or d.master_secret_id
    if not master_id:
        return result(name, "skip", f"{d.strategy} strategy without `masterarn`: no master "
                      "secret needed" if d.strategy != "alternating-users"
                      else "no `masterarn` (see secret-format)")
    # The rotation needs the master only for alternating users, and reads it from `masterarn`;
    # a --master-secret given to diagnose with is the doctor's own: its problems are warnings.
    needed = d.strategy in ("alternating-users", "dual-password") and \
        master_id == d.current.masterarn
    bad: Status = "fail" if needed else "warn"
    unused = "" if needed else (f" (the rotation does not use it, strategy {d.strategy}: only "
                                "the doctor reads with it)")
    master = master_credentials(d, master_id)
    if master is None:
        error = d.masters.get(master_id)
        text = error.message if isinstance(error, RotationError) else "unreadable"
        hint = error.hint if isinstance(error, RotationError) else ""
        return result(name, bad, f"master secret {master_id}: {text}{unused}", hint or
                      "allow secretsmanager:GetSecretValue (and kms:Decrypt) on the master "
                      "secret for the function's role")
    if d.adapter is None:
        return result(name, "skip", f"master secret {master_id} readable; no login tried "
                      "(see secret-format)")
    if d.db_blocker is not None or not d.tcp_ok:
        return result(name, "skip", f"master secret {master_id} readable; no login tried: see "
                      f"{d.db_blocker or 'db-network'}")
    outcome = d.try_login(master)
    if outcome.error is not None:
        return result(name, bad, f"master secret readable, but its login fails: "
                      f"{outcome.error.message}{unused}", outcome.error.hint)
    return result(name, "ok", f"master secret readable; {master.username!r} logs in")
