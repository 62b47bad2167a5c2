"""``rotation doctor``'s verdicts when something on the database path is wrong, on real sockets.

Each broken setup must end in exactly one failed check, the one that names the root cause, with
a fix for that cause (not a CA hint for a port that is not a database, not a password hint for a
missing TLS); the checks that depend on it are skipped saying which check to read, never warned
about; and the command exits non-zero. The servers are the session's throwaway PostgreSQL and
MariaDB (TLS, scram-sha-256, ``hostssl``-only ``pg_hba.conf``, ``require_secure_transport``);
the ports that are not databases are loopback sockets of this module, which stop by themselves.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from rotation.config import PasswordPolicy
from rotation.password import generate_password
from rotation.tools.cli import main
from rotation.tools.local import LocalRotationService
from rotation.tools.sandbox import ServerHandle
from tests.conftest import LeakScan
from tests.integration.test_cli_local import SERVERS, DoctorRig

pytestmark = pytest.mark.integration

SPEAKS = {"postgres": "PostgreSQL", "mariadb": "MySQL"}
HTTP_REPLY = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
GARBAGE_REPLY = b"\x00\x01\x02\x03 garbage \xff\xfe\xfd"
SERVICE_LIFETIME = 30.0  # seconds: a fake service's thread stops by itself after this


@contextlib.contextmanager
def fake_service(reply: bytes | None) -> Iterator[int]:
    """A loopback TCP port that is not a database; yields the port.

    ``reply=None``: it accepts connections and never says a word (the connections stay open until
    teardown). Otherwise it sends ``reply`` as soon as a connection is accepted (``b""``: it
    closes at once), then waits for the client to hang up. Its thread polls a stop flag and
    gives up after ``SERVICE_LIFETIME`` seconds on its own; teardown stops it and closes every
    socket."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []
    deadline = time.monotonic() + SERVICE_LIFETIME

    def serve() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if reply is None:
                held.append(conn)
                continue
            with conn, contextlib.suppress(OSError):
                if reply:
                    conn.sendall(reply)
                    conn.settimeout(2)
                    while conn.recv(1024):  # until the client hangs up (or 2 s of silence)
                        pass

    thread = threading.Thread(target=serve, name="fake-service", daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        for conn in held:
            conn.close()


def run_cli(rig: DoctorRig, arn: str, ca_bundle: str, capsys: pytest.CaptureFixture[str],
            leak_scan: LeakScan, *extra: str) -> tuple[int, dict[str, Any]]:
    """`rotation doctor --json` as a user runs it; returns the exit code and the document."""
    code = main(["doctor", arn, "--json", "--no-function", "--timeout", "1",
                 "--ca-bundle", ca_bundle, *extra])
    out, err = capsys.readouterr()
    leak_scan.add_text(out)
    leak_scan.add_text(err)
    doc: dict[str, Any] = json.loads(out)
    return code, doc


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in doc["checks"]}


# -- one broken setup, one failed check ----------------------------------------------------------

@dataclass(frozen=True)
class Broken:
    """A broken setup: builds the secret (and CA bundle); says which check must fail, and how."""

    build: Callable[[DoctorRig, Path, contextlib.ExitStack], tuple[str, str]]
    root: str  # the one check that fails
    detail: str  # in its detail ({speaks}: PostgreSQL / MySQL; {ca}: the CA bundle's path)
    fix: str  # in its fix
    not_blamed: tuple[str, ...]  # wrong causes: in neither its detail nor its fix


def _on_port(reply: bytes | None) -> Callable[[DoctorRig, Path, contextlib.ExitStack],
                                                tuple[str, str]]:
    def build(rig: DoctorRig, tmp: Path, stack: contextlib.ExitStack) -> tuple[str, str]:
        port = stack.enter_context(fake_service(reply))
        return rig.secret(create_user=False, port=port), rig.server.ca_file
    return build


def _closed_port(rig: DoctorRig, tmp: Path, stack: contextlib.ExitStack) -> tuple[str, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return rig.secret(create_user=False, port=port), rig.server.ca_file


def _ca_bundle(kind: str) -> Callable[[DoctorRig, Path, contextlib.ExitStack], tuple[str, str]]:
    def build(rig: DoctorRig, tmp: Path, stack: contextlib.ExitStack) -> tuple[str, str]:
        path = tmp / f"{kind}.pem"
        if kind == "other-ca":
            trustme.CA().cert_pem.write_to_path(str(path))
        elif kind == "not-pem":
            path.write_text("this is not a certificate\n")
        return rig.secret(), str(path)
    return build


def _secret(**overrides: Any) -> Callable[[DoctorRig, Path, contextlib.ExitStack],
                                          tuple[str, str]]:
    def build(rig: DoctorRig, tmp: Path, stack: contextlib.ExitStack) -> tuple[str, str]:
        return rig.secret(**overrides), rig.server.ca_file
    return build


def _wrong_password(**overrides: Any) -> Callable[[DoctorRig, Path, contextlib.ExitStack],
                                                  tuple[str, str]]:
    def build(rig: DoctorRig, tmp: Path, stack: contextlib.ExitStack) -> tuple[str, str]:
        username = f"doc_{uuid.uuid4().hex[:10]}"
        rig.server.create_login_user(username, generate_password(PasswordPolicy()))
        rig.created.append(username)
        arn = rig.secret(username=username, password=generate_password(PasswordPolicy()),
                         create_user=False, **overrides)
        return arn, rig.server.ca_file
    return build


NOT_A_DATABASE = ("password", "ca-bundle", "CA_BUNDLE", "certificate")
NOT_TLS = ("ca-bundle", "CA_BUNDLE", "certificate")
BROKEN = {
    "nothing listens": Broken(_closed_port, "db-network", "refused the connection",
                              "security group", NOT_A_DATABASE),
    "port accepts and stays silent": Broken(
        _on_port(None), "db-protocol", "never answered", "check `port`", NOT_A_DATABASE),
    "port answers HTTP": Broken(
        _on_port(HTTP_REPLY), "db-protocol", "this port does not speak {speaks}",
        "check `port`", NOT_A_DATABASE),
    "port answers garbage": Broken(
        _on_port(GARBAGE_REPLY), "db-protocol", "this port does not speak {speaks}",
        "check `port`", NOT_A_DATABASE),
    "port closes at once": Broken(
        _on_port(b""), "db-protocol", "this port does not speak {speaks}", "check `port`",
        NOT_A_DATABASE),
    "CA bundle of another CA": Broken(
        _ca_bundle("other-ca"), "db-tls", "not signed by a CA in {ca}", "--ca-bundle",
        ("password",)),
    "CA bundle not a PEM": Broken(
        _ca_bundle("not-pem"), "db-tls", "{ca} given with --ca-bundle",
        "--ca-bundle", ("password", "not signed")),
    "CA bundle missing": Broken(
        _ca_bundle("missing"), "db-tls", "{ca} given with --ca-bundle", "--ca-bundle",
        ("password", "not signed")),
    "ssl false on a TLS-only server": Broken(
        _secret(ssl=False), "db-tls", "the server requires TLS and the secret disables it",
        '`"ssl": false`', NOT_TLS),
    "wrong password": Broken(_wrong_password(), "db-login", "AWSCURRENT does not log in",
                             "AWSCURRENT value", NOT_TLS),
    "database does not exist": Broken(_secret(dbname="nosuchdb"), "db-login", "nosuchdb",
                                      "`dbname`", (*NOT_TLS, "security group")),
}
DETAIL_EXTRA = {  # per engine: what the detail says besides
    ("port answers HTTP", "postgres"): "HTTP/1.1 400 Bad Request",
    ("port answers HTTP", "mariadb"): "HTTP/1.1 400 Bad Request",
    ("CA bundle not a PEM", "postgres"): "no PEM certificate",
    ("CA bundle not a PEM", "mariadb"): "no PEM certificate",
    ("CA bundle missing", "postgres"): "does not exist",
    ("CA bundle missing", "mariadb"): "does not exist",
}
DB_PATH = ("db-network", "db-protocol", "db-tls", "db-login")


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_one_broken_setup_fails_one_check_with_its_cause(
        case: str, drig: DoctorRig, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        leak_scan: LeakScan) -> None:
    broken = BROKEN[case]
    with contextlib.ExitStack() as stack:
        # GIVEN a secret (and CA bundle) broken in one way
        arn, ca_bundle = broken.build(drig, tmp_path, stack)

        # WHEN `rotation doctor` runs
        code, doc = run_cli(drig, arn, ca_bundle, capsys, leak_scan)

    # THEN it exits non-zero, and exactly one check fails: the root cause, with its own fix
    checks = by_name(doc)
    assert code == 1, doc
    assert [c["name"] for c in doc["checks"] if c["status"] == "fail"] == [broken.root], doc
    root = checks[broken.root]
    assert broken.detail.format(speaks=SPEAKS[drig.engine], ca=ca_bundle) in root["detail"], root
    assert DETAIL_EXTRA.get((case, drig.engine), "") in root["detail"], root
    assert broken.fix in root["fix"], root
    for wrong in broken.not_blamed:
        assert wrong not in root["detail"] + root["fix"], (wrong, root)
    # AND nothing downstream warns about it; the database checks after it name it
    assert [c["name"] for c in doc["checks"] if c["status"] == "warn"] == [], doc
    for name in DB_PATH[DB_PATH.index(broken.root) + 1:]:
        assert checks[name]["status"] == "skip", checks[name]
        assert broken.root in checks[name]["detail"], checks[name]
    # AND the PostgreSQL storage check is not applicable without a login
    if drig.engine == "postgres":
        for name in ("pg-stored-method", "pg-password-encryption"):
            assert checks[name]["status"] == "skip", checks[name]
            assert "no login" in checks[name]["detail"], checks[name]


def test_a_server_without_tls_is_not_a_ca_problem(pg_server_notls: ServerHandle, sm: Any,
                                                  leak_scan: LeakScan) -> None:
    # GIVEN a verify-full secret for a PostgreSQL server that offers no TLS at all
    leak_scan.add(pg_server_notls.admin_password)
    rig = DoctorRig(sm, pg_server_notls, LocalRotationService(sm), "postgres", [])
    try:
        arn = rig.secret()

        # WHEN the doctor runs
        report = rig.doctor(arn, settings=rig.settings(pg_server_notls.ca_file))
    finally:
        for user in rig.created:
            pg_server_notls.drop_user(user)

    # THEN db-tls fails saying the server offers no TLS, not that the CA is wrong
    assert [c.name for c in report.checks if c.status == "fail"] == ["db-tls"], report.checks
    check = report.check("db-tls")
    assert "does not offer TLS" in check.detail
    assert "ca-bundle" not in check.fix
    assert "CA_BUNDLE" not in check.fix
    assert report.check("db-protocol").status == "ok"
    assert "TLS not offered" in report.check("db-protocol").detail
    assert report.check("db-login").status == "skip"


@pytest.mark.parametrize(("engine", "root", "tls_status", "detail"), [
    # hostssl-only pg_hba.conf refuses before any password is checked: TLS is the cause
    ("postgres", "db-tls", "fail", "the server requires TLS and the secret disables it"),
    # MariaDB answers 1045 either way; over TLS the password is refused too: the password is
    ("mariadb", "db-login", "warn", "AWSCURRENT does not log in"),
])
def test_ssl_false_with_a_wrong_password_names_what_a_retry_over_tls_shows(
        engine: str, root: str, tls_status: str, detail: str, request: Any, sm: Any,
        monkeypatch: pytest.MonkeyPatch, leak_scan: LeakScan) -> None:
    # GIVEN `"ssl": false` on a TLS-only server, and a password that is not the user's
    server: ServerHandle = request.getfixturevalue(SERVERS[engine])
    monkeypatch.setenv("ROTATION_CA_BUNDLE", server.ca_file)
    rig = DoctorRig(sm, server, LocalRotationService(sm), engine, [])
    try:
        with contextlib.ExitStack() as stack:
            arn, _ = _wrong_password(ssl=False)(rig, Path(), stack)

        # WHEN the doctor runs
        report = rig.doctor(arn)
    finally:
        for user in rig.created:
            server.drop_user(user)

    # THEN one failure, and its cause is the one the servers give
    assert [c.name for c in report.checks if c.status == "fail"] == [root], report.checks
    assert detail in report.check(root).detail
    assert report.check("db-tls").status == tls_status
    if root == "db-login":  # the TLS retry showed TLS is not the problem: no TLS hint
        assert "require_secure_transport" not in report.check(root).fix
        assert "disabled by the secret" in report.check("db-tls").detail


def test_fix_does_not_blame_the_password_when_tls_is_the_cause(drig: DoctorRig) -> None:
    # GIVEN a stuck rotation (after createSecret) of a secret that disables TLS on a TLS-only
    # server
    arn = drig.secret(ssl=False)
    token = str(uuid.uuid4())
    drig.service.rotate(arn, drig.invoke, token=token, steps=("createSecret",))
    before = drig.service.labels(arn)

    # WHEN the doctor runs with --fix
    report = drig.doctor(arn, fix=True)

    # THEN the label stays, because AWSCURRENT could not be shown to work, for the TLS reason
    check = report.check("staging-labels")
    assert check.status == "fail"
    assert "cannot confirm that AWSCURRENT works" in check.detail
    assert "password was changed" not in check.detail
    assert "db-tls" in check.fix
    assert drig.service.labels(arn) == before


def test_an_unreachable_database_does_not_fail_the_master_twice(drig: DoctorRig) -> None:
    # GIVEN an alternating-users secret whose database port accepts and stays silent
    with fake_service(None) as port:
        arn = drig.secret(create_user=False, port=port, masterarn=drig.master())

        # WHEN the doctor runs
        report = drig.doctor(arn)

    # THEN the silent port is the one failure; the master's login is not tried against it
    assert [c.name for c in report.checks if c.status == "fail"] == ["db-protocol"]
    master = report.check("master-secret")
    assert master.status == "skip"
    assert "db-protocol" in master.detail
