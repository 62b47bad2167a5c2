"""The checks that depend on the network and the identity they run with, in order, and the loop
that runs them (one check's crash never stops the others)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from rotation.diagnosis.database import (
    check_db_login,
    check_db_network,
    check_db_protocol,
    check_db_tls,
)
from rotation.diagnosis.master import check_master_secret
from rotation.diagnosis.postgres import (
    check_pg_libpq,
    check_pg_password_encryption,
    check_pg_stored_method,
)
from rotation.diagnosis.report import CheckResult, DoctorReport, result
from rotation.diagnosis.secret import (
    check_describe,
    check_endpoint,
    check_kms_decrypt,
    check_rotation_config,
    check_secret_format,
    check_staging_labels,
)
from rotation.diagnosis.state import Check, Doctor
from rotation.errors import RotationError

D = TypeVar("D", bound=Doctor)

#: every check a diagnosis runs, wherever it runs (the laptop doctor adds the function's
#: configuration and logs, which only the caller can read)
CHECKS: tuple[Check, ...] = (
    check_endpoint,
    check_describe,
    check_rotation_config,
    check_kms_decrypt,
    check_secret_format,
    check_db_network,
    check_db_protocol,
    check_db_tls,
    check_db_login,
    check_staging_labels,
    check_pg_libpq,
    check_pg_password_encryption,
    check_pg_stored_method,
    check_master_secret,
)


def run_checks(doctor: D, checks: Sequence[Callable[[D], CheckResult]], *,
               on_result: Callable[[CheckResult], None] | None = None) -> DoctorReport:
    """Run ``checks`` in order on ``doctor``; never raises for a finding."""
    report = DoctorReport(doctor.secret_id)
    for check in checks:
        try:
            verdict = check(doctor)
        except (RotationError, OSError) as exc:  # a check must not stop the others
            message = exc.message if isinstance(exc, RotationError) else type(exc).__name__
            verdict = result(check.__name__.removeprefix("check_").replace("_", "-"),
                             "fail", f"the check itself failed: {message}")
        report.checks.append(verdict)
        if on_result:
            on_result(verdict)
    report.secret_arn = doctor.state.arn if doctor.state else None
    return report
