"""PostgreSQL specifics: the driver's libpq does SCRAM-SHA-256, how the server stores passwords,
and how the role's own password is stored. Read-only queries (SHOW, SELECT), each on a short
connection of its own."""

from __future__ import annotations

from typing import Any

from rotation.credentials import DbCredentials
from rotation.diagnosis.database import ensure_login
from rotation.diagnosis.master import master_credentials
from rotation.diagnosis.report import CheckResult, result
from rotation.diagnosis.state import Doctor
from rotation.errors import DatabaseError

MIN_LIBPQ_FOR_SCRAM = 100000  # libpq 10


def check_pg_libpq(d: Doctor) -> CheckResult:
    """The libpq the driver loads does SCRAM-SHA-256 (libpq 10+)."""
    name = "pg-libpq"
    if d.current is None or d.current.family != "postgres":
        return result(name, "skip", "not a PostgreSQL secret")
    try:
        import psycopg
    except ImportError:
        return result(name, "fail", "psycopg is not installed here",
                      "pip install 'rotation[postgres]' (the function needs the postgres layer)")
    version = psycopg.pq.version()
    # libpq numbers versions MMmmpp before 10 (90600 = 9.6) and MM00mm from 10 (180000 = 18.0)
    shown = (f"{version // 10000}.{version % 10000}" if version >= MIN_LIBPQ_FOR_SCRAM
             else f"{version // 10000}.{version // 100 % 100}")
    if version < MIN_LIBPQ_FOR_SCRAM:
        return result(name, "fail", f"psycopg uses libpq {shown}, which cannot do "
                      "SCRAM-SHA-256", "install psycopg[binary] (bundles a current libpq)")
    return result(name, "ok", f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}) uses "
                  f"libpq {shown} on {d.here}: SCRAM-SHA-256 capable")


def _pg_rows(d: Doctor, creds: DbCredentials, query: Any) -> list[tuple[Any, ...]]:
    """Run one read-only query as ``creds`` (a separate, short connection, every wait bounded
    by the adapter's timeouts)."""
    from psycopg import sql

    if isinstance(query, str):
        query = sql.SQL(query)  # a plain string would be composed as a literal
    with d.adapters.get(creds.engine).connect(creds) as session:
        fetch = getattr(session, "fetch", None)
        if fetch is None:
            raise DatabaseError(f"the {creds.engine} adapter's session has no fetch()")
        rows: list[tuple[Any, ...]] = fetch(query)
        return rows


def check_pg_password_encryption(d: Doctor) -> CheckResult:
    """``SHOW password_encryption``: how the server stores passwords set as plaintext."""
    name = "pg-password-encryption"
    if d.current is None or d.current.family != "postgres":
        return result(name, "skip", "not a PostgreSQL secret")
    creds = _pg_reader(d)
    if creds is None:
        return result(name, "skip", no_login(d))
    try:
        rows = _pg_rows(d, creds, "SHOW password_encryption")
    except DatabaseError as exc:
        return result(name, "skip", f"cannot read password_encryption: {exc}")
    value = str(rows[0][0]) if rows else "?"
    if value == "scram-sha-256":
        return result(name, "ok", "password_encryption = scram-sha-256")
    return result(name, "warn", f"password_encryption = {value}: passwords set by others "
                  "(psql \\password, ALTER ROLE ... PASSWORD) are stored as " + value +
                  "; rotation itself always sends a SCRAM-SHA-256 verifier",
                  "set password_encryption = 'scram-sha-256' in the parameter group")


def no_login(d: Doctor) -> str:
    """Why the checks that read the server have no login to read with."""
    if d.db_blocker is not None:
        return f"no login: see {d.db_blocker}"
    if d.adapter is None:
        return "no login: see secret-format"
    if d.login is not None and not d.login.ok:
        return "no login: AWSCURRENT does not log in (see db-login)"
    return "no login"


def _pg_reader(d: Doctor) -> DbCredentials | None:
    """A credential to read the server with: the current one when it logs in, else a given
    master. None when the database cannot be reached at all."""
    if d.db_blocker is not None or d.adapter is None:
        return None
    login = ensure_login(d)
    if login is not None and login.ok and d.current is not None:
        return d.current
    return master_credentials(d)


# Only the method is selected, never the verifier itself.
_STORED_METHOD = ("SELECT CASE WHEN rolpassword IS NULL THEN 'none' "
                  "WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram-sha-256' "
                  "WHEN rolpassword LIKE 'md5%' THEN 'md5' ELSE 'other' END "
                  "FROM pg_authid WHERE rolname = {}")
_HBA_METHODS = ("SELECT DISTINCT auth_method FROM pg_hba_file_rules "
                "WHERE type IN ('host', 'hostssl') AND error IS NULL")


def check_pg_stored_method(d: Doctor) -> CheckResult:
    """How the role's password is stored (pg_authid: needs superuser; falls back gracefully)."""
    name = "pg-stored-method"
    if d.current is None or d.current.family != "postgres":
        return result(name, "skip", "not a PostgreSQL secret")
    if d.db_blocker is not None or d.adapter is None:  # the failure upstream is the one to fix
        return result(name, "skip", no_login(d))
    user = d.current.username
    readers = [c for c in (_pg_reader(d), master_credentials(d)) if c is not None]
    login_failed = d.login is None or not d.login.ok
    if not readers:
        return result(name, "skip", no_login(d) + "; to read the role's stored password method "
                      "from pg_authid, pass --master-secret with a superuser (a password stored "
                      "as md5 fails like a wrong one where pg_hba.conf requires scram-sha-256)")
    method: str | None = None
    hba: set[str] | None = None
    from psycopg import sql

    for creds in dict.fromkeys(readers):
        try:
            rows = _pg_rows(d, creds, sql.SQL(_STORED_METHOD).format(sql.Literal(user)))
        except DatabaseError:
            continue
        method = str(rows[0][0]) if rows else None
        if method is None:
            return result(name, "fail", f"role {user!r} does not exist on the server",
                          "create the role, or fix `username` in the secret")
        try:
            hba = {str(r[0]) for r in _pg_rows(d, creds, _HBA_METHODS)}
        except DatabaseError:
            hba = None
        break
    if method is None and login_failed:
        return result(name, "skip", "no login that can read pg_authid: AWSCURRENT does not log "
                      "in (see db-login), and the master could not read it (it needs a "
                      "superuser; see master-secret)")
    if method is None:
        return result(name, "warn", "cannot read pg_authid (it needs a superuser; on RDS nobody "
                      "can): the role's stored password method is unknown",
                      "pass --master-secret with a superuser credential to check it")
    if method == "scram-sha-256":
        return result(name, "ok", f"role {user!r} has a SCRAM-SHA-256 verifier")
    if method == "md5":
        scram_only = hba is not None and "md5" not in hba and "password" not in hba
        if scram_only or login_failed:
            why = (f"pg_hba.conf allows only {', '.join(sorted(hba or ()))} for TCP logins"
                   if scram_only else "its login fails (pg_hba.conf most likely requires "
                   "scram-sha-256)")
            return result(name, "fail", f"role {user!r} has an md5-stored password, and {why}: "
                          "it cannot log in with a password until it gets a SCRAM-SHA-256 "
                          "verifier",
                          "as an admin, with password_encryption = 'scram-sha-256', set the "
                          "role's password again to the AWSCURRENT value (ALTER ROLE ... "
                          "PASSWORD), then rotate: rotation always stores SCRAM verifiers")
        return result(name, "warn", f"role {user!r} has an md5-stored password (pg_hba.conf "
                      "still allows md5); the next rotation replaces it with SCRAM-SHA-256",
                      "rotate the secret, then require scram-sha-256 in pg_hba.conf")
    return result(name, "warn", f"role {user!r}: stored password method is {method}")

