"""Database checks, in the order a login meets them: ``db-network`` (TCP), ``db-protocol`` (does
the port speak the engine's protocol, and does it offer TLS: a probe that sends no credential),
``db-tls`` and ``db-login`` (one login through the engine's adapter, whose failure is attributed
to one of the two, with the real cause: a CA bundle that is not the server's CA, a server that
requires TLS while the secret disables it, a server without TLS, a wrong password, a database
that does not exist, ...).

A failed check names itself the root cause (``Doctor.db_blocker``): the checks after it that
need the database skip, naming it, and log in no more. Nothing here writes to the database.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from rotation.diagnosis.report import CheckResult, result
from rotation.diagnosis.state import Diagnosis, Doctor, LoginOutcome
from rotation.diagnosis.wire import DEFAULT_PORTS, PROTOCOL_NAMES, WIRE_PROBES
from rotation.errors import (
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
    RotationError,
    TlsError,
)

_NETWORK_HINT = ("check that the function's subnets reach the database's subnets and that the "
                 "database's security group allows the function's security group on this port; "
                 "check `host` and `port` in the secret")


def fail_db(d: Doctor, name: str, detail: str, fix: str) -> CheckResult:
    """A failed database check: the checks after it that need the database skip, naming it."""
    d.db_blocker = name
    return result(name, "fail", detail, fix)


def db_skip(d: Doctor, name: str) -> CheckResult | None:
    """The skip for a database check that cannot run: no credential, or an earlier failure."""
    if d.current is None or d.adapter is None:
        return result(name, "skip", "no usable current credential (see secret-format)")
    if d.db_blocker is not None:
        return result(name, "skip", f"not tried: see {d.db_blocker}")
    return None


def check_db_network(d: Doctor) -> CheckResult:
    """A TCP connection to host:port opens within the timeout."""
    name = "db-network"
    if (skip := db_skip(d, name)) is not None:
        return skip
    assert d.current is not None
    host, port = d.current.host, d.current.port
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        d.tcp_ok = False
        return fail_db(d, name, f"cannot resolve host {host!r} from {d.here}",
                       "check `host` in the secret; a private endpoint resolves only inside its "
                       "VPC (enable DNS resolution/hostnames there)")
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=d.timeout):
            pass
    except TimeoutError:
        d.tcp_ok = False
        return fail_db(d, name, f"no answer from {host}:{port} within {d.timeout:g} s "
                       "(packets dropped: typical of a security group or network ACL)",
                       _NETWORK_HINT)
    except ConnectionRefusedError:
        d.tcp_ok = False
        return fail_db(d, name, f"{host}:{port} refused the connection (nothing listens "
                       "there: wrong port, or the database is down)", _NETWORK_HINT)
    except OSError as exc:
        d.tcp_ok = False
        return fail_db(d, name, f"cannot connect to {host}:{port}: "
                       f"{exc.strerror or type(exc).__name__}", _NETWORK_HINT)
    d.tcp_ok = True
    elapsed = (time.perf_counter() - started) * 1000
    return result(name, "ok", f"TCP connect to {host}:{port} in {elapsed:.0f} ms (from "
                  f"{d.here})")


_MYSQL_REFUSAL_FIX: Mapping[int, str] = {
    1129: "the server blocked this host after too many interrupted connections: run "
          "`FLUSH HOSTS` (mysqladmin flush-hosts), and raise max_connect_errors",
    1130: "create the account for the host the function connects from (for example "
          "'user'@'%'), or connect from an allowed address",
    1040: "the server has no connection left (max_connections): find who holds them, or raise "
          "the limit",
}


def check_db_protocol(d: Doctor) -> CheckResult:
    """The port speaks the engine's protocol (a probe that sends no credential), and says
    whether it offers TLS. A port that accepts TCP and then says nothing, or says something
    else, fails here: the rotation cannot work against it."""
    name = "db-protocol"
    if (skip := db_skip(d, name)) is not None:
        return skip
    assert d.current is not None
    creds = d.current
    probe = WIRE_PROBES.get(creds.family)
    if probe is None:
        return result(name, "skip", f"no protocol probe for engine {creds.engine}: db-login "
                      "judges the connection")
    where = f"{creds.host}:{creds.port}"
    protocol = PROTOCOL_NAMES[creds.family]
    check_port = (f"check `port` (and `engine`) in the secret: {protocol} listens on "
                  f"{DEFAULT_PORTS[creds.family]} by default; find out what listens on {where}")
    try:
        d.wire = wire = probe(creds.host, creds.port, d.timeout)
    except OSError as exc:
        return fail_db(d, name, f"cannot open a second connection to {where}: "
                       f"{exc.strerror or type(exc).__name__}", _NETWORK_HINT)
    if wire.outcome == "silent":
        asked = ("did not answer PostgreSQL's SSLRequest" if creds.family == "postgres" else
                 "sent no MySQL greeting (a MySQL server speaks first)")
        return fail_db(d, name, f"{where} accepts TCP connections but never answered: it "
                       f"{asked} within {d.timeout:g} s. Either this port does not speak "
                       f"{protocol}, or the server is hung",
                       check_port + " (a proxy or load balancer without a healthy target "
                       "accepts connections and stays silent)")
    if wire.outcome == "closed":
        return fail_db(d, name, f"{where} accepted the connection and closed it without a "
                       f"word: this port does not speak {protocol}, or a proxy in front of it "
                       "has no database to forward to", check_port)
    if wire.outcome == "foreign":
        return fail_db(d, name, f"{where} answered {wire.seen}, which is not {protocol}'s "
                       f"protocol: this port does not speak {protocol}", check_port)
    if wire.outcome == "refused":
        return fail_db(d, name, f"the server at {where} speaks MySQL but refuses this client "
                       f"before any login: error {wire.code}: {wire.seen}",
                       _MYSQL_REFUSAL_FIX.get(wire.code or 0, "see the server's error log"))
    tls = {True: "TLS offered", False: "TLS not offered", None: "TLS unknown"}[wire.tls_offered]
    return result(name, "ok", f"{wire.server} answers on {where} ({tls})")


def ensure_login(d: Doctor) -> LoginOutcome | None:
    """The current credential's one login, once the path to the database is known to work."""
    if (d.login is None and d.current is not None and d.adapter is not None and d.tcp_ok
            and d.db_blocker is None):
        d.login = d.try_login(d.current)
    return d.login


def login_diagnosis(d: Doctor) -> Diagnosis | None:
    """Why the current credential's login failed (None when it logged in or was not tried)."""
    login = ensure_login(d)
    if d.diagnosis is None and login is not None and login.error is not None:
        d.diagnosis = _diagnose(d, login.error)
    return d.diagnosis


_PG_NO_HBA_ENTRY = re.compile(r"no pg_hba\.conf entry|pg_hba\.conf rejects connection")
_NO_TLS_AT_SERVER = re.compile(r"does not support SSL|does not offer TLS", re.IGNORECASE)
_HOST_MISMATCH = re.compile(r"does not match host name|Hostname mismatch|IP address mismatch",
                            re.IGNORECASE)
_NOT_VERIFIED = re.compile(r"certificate verif|self[- ]signed|local issuer|unknown ca|"
                           r"root certificate", re.IGNORECASE)
_DB_MISSING = re.compile(r'database "[^"]*" does not exist|database .* does not exist',
                         re.IGNORECASE)
_PASSWORD_REFUSED = re.compile(r"password authentication failed|access denied for user",
                               re.IGNORECASE)
_TLS_OFF_FIX = ('remove `"ssl": false` (or `"sslmode": "disable"`) from the secret: the default, '
                "verify-full, encrypts the connection and verifies the server")


def _errno(error: RotationError) -> str | None:
    return error.sqlstate if isinstance(error, DatabaseError) else None


def _diagnose(d: Doctor, error: RotationError) -> Diagnosis:
    """Name the real cause of a failed login, and the check that owns it."""
    assert d.current is not None
    creds = d.current
    where = f"{creds.host}:{creds.port}"
    server = d.wire.server if d.wire is not None and d.wire.server else f"the {creds.engine} server"
    text = error.message
    # 1. The secret disables TLS and the server insists on it.
    if creds.sslmode == "disable" and (evidence := _tls_required(d, error)):
        return Diagnosis("db-tls", f"the server requires TLS and the secret disables it "
                         f"(`ssl`: false / sslmode disable): {server} at {where} refused the "
                         f"unencrypted login ({evidence})", _TLS_OFF_FIX)
    # 2. pg_hba.conf has no line for this user, database and address (with TLS on): a login
    # refusal, whatever words the adapter chose for it.
    if _PG_NO_HBA_ENTRY.search(text):
        fix = (error.hint if isinstance(error, LoginError) and error.hint else
               "add (or fix) a `hostssl` line in pg_hba.conf that lets this user reach this "
               "database from the function's address range, then reload the server")
        return Diagnosis("db-login", f"AWSCURRENT does not log in as {creds.username!r}: "
                         f"{text}", fix, tls_settled=True)
    # 3. The secret wants TLS and the server has none.
    if creds.sslmode != "disable" and (
            (d.wire is not None and d.wire.tls_offered is False)
            or _NO_TLS_AT_SERVER.search(text) or _errno(error) == "2026"):
        return Diagnosis("db-tls", f"{server} at {where} does not offer TLS, and the secret's "
                         f"sslmode {creds.sslmode} requires it (no password was sent)",
                         "turn TLS on at the server (PostgreSQL: ssl = on with a certificate; "
                         "MySQL/MariaDB: ssl_cert and ssl_key); rotation never falls back to "
                         "plaintext")
    if isinstance(error, TlsError):
        return _diagnose_tls(d, error, where)
    return _diagnose_login(d, error, where, server)


def _tls_required(d: Doctor, error: RotationError) -> str | None:
    """Evidence that the server refused a login because it came without TLS (or None)."""
    assert d.current is not None
    creds = d.current
    text = error.message
    if "no encryption" in text and _PG_NO_HBA_ENTRY.search(text):
        return 'pg_hba.conf has no entry for unencrypted connections: "no encryption"'
    if isinstance(error, TlsError) or _errno(error) == "3159":
        return text  # with TLS off, a TLS error is the server asking for it
    if (creds.family == "mysql" and isinstance(error, LoginError)
            and (d.wire is None or d.wire.tls_offered is not False)):
        # MySQL and MariaDB (before 11.4) answer a plaintext login under
        # require_secure_transport with the same 1045 as a wrong password: ask again over TLS.
        if d.tls_retry is None:
            d.tls_retry = d.try_login(replace(creds, sslmode="require", ssl_opt_out=False))
        if d.tls_retry.ok:
            return "the same credential logs in over TLS"
    return None


def _ca_bundle_problem(path: str) -> str | None:
    """What is wrong with the CA bundle file itself (None: a readable PEM with certificates)."""
    file = Path(path)
    if not file.exists():
        return "does not exist"
    if not file.is_file():
        return "is not a file"
    try:
        data = file.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return "holds no PEM certificate (a DER file? convert it: openssl x509 -inform der)"
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        return f"is not a valid PEM bundle ({type(exc).__name__})"
    return None


def _system_trust_store() -> str:
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile or "the system trust store"


def _diagnose_tls(d: Doctor, error: TlsError, where: str) -> Diagnosis:
    assert d.current is not None
    creds = d.current
    bundle = d.settings.ca_bundle
    if d.remote:  # the function's bundle comes from the template, not from a flag
        given = "ROTATION_CA_BUNDLE (the template's CaBundle or RdsCaBundle)"
        fix_ca = ("set the template's CaBundle to a PEM of the CA that signed the server's "
                  "certificate, shipped in the function or a layer (for RDS and Aurora, "
                  "RdsCaBundle=on attaches AWS's RDS CA bundle)")
    else:
        given = "--ca-bundle (or ROTATION_CA_BUNDLE)"
        fix_ca = ("pass --ca-bundle with the PEM of the CA that signed the server's "
                  "certificate (for RDS and Aurora, AWS's RDS CA bundle); the function reads "
                  "the same file from ROTATION_CA_BUNDLE")
    verifying = creds.sslmode in ("verify-full", "verify-ca")
    if verifying and bundle and (problem := _ca_bundle_problem(bundle)):
        return Diagnosis("db-tls", f"the CA bundle {bundle} given with {given} {problem}: the "
                         f"certificate of {where} cannot be verified, so no login was tried",
                         fix_ca)
    if verifying and _HOST_MISMATCH.search(error.message):
        return Diagnosis("db-tls", f"the certificate of {where} does not name host "
                         f"{creds.host!r} (sslmode {creds.sslmode} checks it): {error.message}",
                         "set `host` in the secret to a name on the certificate (the instance "
                         "or cluster endpoint, not an IP address or a CNAME of your own), or "
                         'use "sslmode": "verify-ca"')
    if verifying and "expired" in error.message.lower():
        return Diagnosis("db-tls", f"the certificate of {where} has expired (or the clock of "
                         f"{d.here} is wrong): {error.message}",
                         "renew the server's certificate (on RDS: modify the instance's CA)")
    if verifying and _NOT_VERIFIED.search(error.message):
        store = (f"{bundle} (the CA bundle given with {given})" if bundle else
                 f"{d.heres} trust store ({_system_trust_store()}; no {given} was given)")
        return Diagnosis("db-tls", f"the certificate of {where} is not signed by a CA in "
                         f"{store}: {error.message}", fix_ca)
    return Diagnosis("db-tls", error.message, error.hint or fix_ca)


def _diagnose_login(d: Doctor, error: RotationError, where: str, server: str) -> Diagnosis:
    assert d.current is not None
    creds = d.current
    user = creds.username
    if d.tls_retry is not None and isinstance(d.tls_retry.error, LoginError):
        error = d.tls_retry.error  # refused over TLS too: that answer has the real cause
    text = error.message
    if isinstance(error, PasswordRefusedError) or (
            isinstance(error, LoginError) and _PASSWORD_REFUSED.search(text)):
        fix = ("the password was changed outside rotation: set the database password to the "
               "AWSCURRENT value (or store the working one with put-secret-value), and check "
               "that the user exists for the host the function connects from")
        if creds.family == "postgres":
            fix += ("; on PostgreSQL a password stored as md5 cannot log in where pg_hba.conf "
                    "requires scram-sha-256 (see pg-stored-method)")
        return Diagnosis("db-login", f"AWSCURRENT does not log in as {user!r}: {text}", fix,
                         tls_settled=True)
    if isinstance(error, (LoginError, PrivilegeError)):
        return Diagnosis("db-login", f"AWSCURRENT does not log in as {user!r}: {text}",
                         error.hint, tls_settled=True)
    if _DB_MISSING.search(text) or _errno(error) == "1049":
        return Diagnosis("db-login", f"database {creds.dbname!r} does not exist on {where} "
                         f"({text})", "fix `dbname` in the secret, or create the database",
                         tls_settled=True)
    answered = (f"{server} answered on {where}, but " if d.wire is not None
                and d.wire.outcome == "speaks" else "")
    if isinstance(error, DbTimeoutError):
        return Diagnosis("db-login", f"{answered}the login as {user!r} did not finish within "
                         f"{d.timeout:g} s: {text}",
                         "the server is overloaded or stuck (check its load and connection "
                         "limits); run the doctor with a longer --timeout to tell slow from "
                         "stuck")
    return Diagnosis("db-login", f"{answered}the login as {user!r} failed: {text}",
                     error.hint or "see the server's log for this connection")


def check_db_tls(d: Doctor) -> CheckResult:
    """TLS handshake and certificate verification, as the adapter does them for a login."""
    name = "db-tls"
    if (skip := db_skip(d, name)) is not None:
        return skip
    assert d.current is not None
    creds = d.current
    diagnosis = login_diagnosis(d)
    if diagnosis is not None and diagnosis.check == name:
        return fail_db(d, name, diagnosis.detail, diagnosis.fix)
    if diagnosis is not None and not diagnosis.tls_settled:
        return result(name, "skip", "not judged: the login failed before TLS was settled "
                      "(see db-login)")
    ca = d.settings.ca_bundle or f"{d.heres} trust store ({_system_trust_store()})"
    if creds.sslmode == "disable":
        return result(name, "warn", "TLS is disabled by the secret (`ssl`: false or sslmode "
                      "disable): the password crosses the network unencrypted",
                      "remove `ssl: false` / set sslmode verify-full and give the CA in "
                      "ROTATION_CA_BUNDLE")
    if creds.sslmode == "require":
        return result(name, "warn", "TLS is on but the certificate is not verified (sslmode "
                      "require)", "use sslmode verify-full with ROTATION_CA_BUNDLE")
    if creds.sslmode == "verify-ca":
        return result(name, "warn", f"certificate chain verified against {ca}, host name not "
                      "checked (sslmode verify-ca)", "use sslmode verify-full")
    return result(name, "ok", f"TLS handshake done, certificate verified against {ca} for "
                  f"host {creds.host}")


def check_db_login(d: Doctor) -> CheckResult:
    """The AWSCURRENT credential logs in and runs a query. Past a working network path, any
    failure here is a failure (with its cause), never a skip."""
    name = "db-login"
    if (skip := db_skip(d, name)) is not None:
        return skip
    assert d.current is not None
    diagnosis = login_diagnosis(d)
    if diagnosis is None:
        return result(name, "ok", f"AWSCURRENT logs in as {d.current.username!r}")
    return result(name, "fail", diagnosis.detail, diagnosis.fix)

