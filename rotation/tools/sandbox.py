"""Throwaway TLS database servers: PostgreSQL, MariaDB and Redis, started from the installed
binaries, and PgBouncer in front of a sandbox PostgreSQL.

One module serves the integration tests, ``rotation demo`` and the benchmarks. A :class:`Sandbox`
owns a temporary directory and every server it started in it; each server is a
:class:`ServerHandle`::

    with Sandbox() as sandbox:
        pg = sandbox.postgres()           # TLS, scram-sha-256, hostssl-only pg_hba.conf
        pg.create_login_user("app", "s3cret-pw")
        mark = pg.log_position()
        ...                               # code under test logs in
        assert pg.login_counts(since=mark) == LoginCounts(succeeded=1, failed=0)
        pooler = sandbox.pgbouncer(pg)    # PgBouncer: TLS both sides, auth_query + SCRAM

What every server gets
    * a free loopback port (``127.0.0.1``, found by binding port 0) and a data directory, unix
      socket, pid file, tmpdir and logs inside the sandbox directory; the machine's own servers
      (stock PostgreSQL on 5432, MariaDB on 3306) and their configuration are never read or
      touched (``--no-defaults`` for MariaDB; an ``initdb`` of our own for PostgreSQL);
    * TLS from a ``trustme`` CA: one server certificate for ``localhost`` *and* ``127.0.0.1``, so
      clients can connect to ``127.0.0.1`` with full verification against
      :attr:`ServerHandle.ca_file`;
    * an admin (superuser) account with a random password, usable only over TLS from 127.0.0.1,
      and a database ``appdb``;
    * connection and statement logging, so tests can count logins and look for leaked passwords.

PgBouncer (:meth:`Sandbox.pgbouncer`)
    Clients must use TLS (``client_tls_sslmode = require``, the sandbox's server certificate) and
    PgBouncer verifies PostgreSQL's certificate (``server_tls_sslmode = verify-full``, the sandbox
    CA). It holds no copy of any user's password: each client login runs ``auth_query`` (as a
    dedicated ``auth_user``, through a ``SECURITY DEFINER`` function reading ``pg_shadow``) and
    gets the user's current SCRAM verifier, so a password change takes effect at the next login;
    with SCRAM, PgBouncer then logs in to PostgreSQL with the client's SCRAM keys. Only the
    ``auth_user``'s own (random, sandbox-only) password is in its ``auth_file``.

Running as root (containers, CI)
    PostgreSQL refuses to run as root, so as root every server process runs as an unprivileged
    user: PostgreSQL and PgBouncer as ``postgres``, MariaDB as ``mysql``, Redis as ``redis`` (if
    those system users exist), else as ``rotation-sandbox`` (created with ``useradd
    --system``). The server's own directory is owned by that user; the sandbox root is
    ``0711``. On a laptop (not root) everything runs as you.
    The privilege switch is done by :mod:`subprocess` itself (``user=``/``group=``/
    ``extra_groups=[]``: setgroups, setgid, setuid in the child), the same system calls as
    ``setpriv``/``runuser`` without depending on either tool.

Process lifetime
    Every server runs in the foreground as a child of this Python process (``postgres -D``, not
    ``pg_ctl start``; ``pgbouncer`` without ``-d``), in its own session so a terminal's Ctrl-C
    does not hit it half-way. Stopping sends the engine's "fast" shutdown signal (SIGINT for
    PostgreSQL, which is what ``pg_ctl stop -m fast`` sends; SIGTERM for MariaDB and PgBouncer),
    waits, then SIGKILLs after a timeout, and reaps the process. ``pg_ctl`` would daemonise the
    postmaster and hand it to PID 1, which in some containers never reaps it (a zombie that still
    answers ``kill -0``). A sandbox stops its servers in the reverse order of their start, so a
    pooler goes before the server behind it. An ``atexit`` hook closes every sandbox still open,
    so an aborted session leaves no server running (only a SIGKILL of this process can leave
    servers behind).

Redis (:meth:`Sandbox.redis`)
    TLS only (``port 0``, ``tls-port``; no client certificates), ACL users: the ``default`` user
    is off, the admin is an ACL user with a random password, kept as its SHA-256 hash in the
    configuration. Redis has no log of logins or commands, so the handle keeps a ``MONITOR``
    connection open from start-up and writes what it sees to ``monitor.log`` (its ``log_file``):
    every command any client runs, ``AUTH`` with its arguments shown as ``(redacted)``, but no
    ACL command (Redis never shows admin commands there). Logins are the ``AUTH`` lines; failed
    ones are counted from ``ACL LOG`` (reason ``auth``). ``slowlog-log-slower-than 0`` keeps
    every command in ``SLOWLOG`` too, which :meth:`ServerHandle.log_text` adds.

Missing binaries raise :class:`SandboxError` naming every place searched and the fix: run
``bash scripts/install-db-servers.sh``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = [
    "ADMIN_USER",
    "DBNAME",
    "HOST",
    "LoginCounts",
    "Sandbox",
    "SandboxError",
    "ServerHandle",
]

HOST = "127.0.0.1"
ADMIN_USER = "sandbox_admin"
DBNAME = "appdb"
SANDBOX_OS_USER = "rotation-sandbox"

INSTALL_HINT = (
    "run `bash scripts/install-db-servers.sh` to install the PostgreSQL and MariaDB server "
    "packages, PgBouncer and Redis (the stock services are not started)"
)

_DEFAULT_STARTUP_TIMEOUT = 60.0
_STOP_TIMEOUT = 20.0
_PORT_ATTEMPTS = 3
# Longest unix socket path both servers accept is 107 bytes; keep a margin for the file name.
_MAX_SOCKET_DIR = 80


class SandboxError(RuntimeError):
    """A throwaway server could not be found, started, reached or stopped.

    The message says what failed and, where one exists, what to do (install the server packages,
    look at the quoted tail of the server log).
    """


@dataclass(frozen=True)
class LoginCounts:
    """Logins found in a server log: ``succeeded`` and ``failed`` attempts."""

    succeeded: int
    failed: int


# --------------------------------------------------------------------------------------------
# Small helpers: users, ports, files, processes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """The OS account a server runs as. ``switch`` is true when we are root and must drop to it."""

    name: str
    uid: int
    gid: int
    switch: bool


_user_lock = threading.Lock()


def _current_account() -> _RunAs:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return _RunAs(name=name, uid=uid, gid=os.getegid(), switch=False)


def _account(name: str) -> _RunAs | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return _RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)


def _ensure_sandbox_account() -> _RunAs:
    """The ``rotation-sandbox`` system user, created on first use (root only)."""
    with _user_lock:
        existing = _account(SANDBOX_OS_USER)
        if existing is not None:
            return existing
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        nologin = shutil.which("nologin") or "/usr/sbin/nologin"
        cmd = [useradd, "--system", "--user-group", "--no-create-home",
               "--home-dir", "/nonexistent", "--shell", nologin, SANDBOX_OS_USER]
        try:
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                cmd, capture_output=True, text=True, check=False, timeout=60)
            output = (result.stdout + result.stderr).strip()
        except OSError as exc:
            output = str(exc)
        # Another process (a parallel test worker) may have created it meanwhile.
        created = _account(SANDBOX_OS_USER)
        if created is None:
            raise SandboxError(
                f"running as root, the sandbox servers need an unprivileged OS user; "
                f"`{' '.join(cmd)}` failed: {output or 'no output'}. Create a user named "
                f"{SANDBOX_OS_USER!r} (or 'postgres' / 'mysql') and retry")
        return created


def _run_as_for(engine: str) -> _RunAs:
    """Who runs ``engine``'s server: the current user, or when root an unprivileged account."""
    if os.geteuid() != 0:
        return _current_account()
    preferred = {"postgres": "postgres", "redis": "redis"}.get(engine, "mysql")
    return _account(preferred) or _ensure_sandbox_account()


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _chown(path: Path, run_as: _RunAs) -> None:
    if run_as.switch:
        os.chown(path, run_as.uid, run_as.gid)


def _check_traversable(path: Path, run_as: _RunAs) -> None:
    """Fail early, with the fix, when ``run_as`` could not reach ``path`` (root only)."""
    if not run_as.switch:
        return
    for directory in reversed(path.parents):
        mode = directory.stat()
        if mode.st_uid == run_as.uid:
            allowed = bool(mode.st_mode & 0o100)
        elif mode.st_gid == run_as.gid:
            allowed = bool(mode.st_mode & 0o010)
        else:
            allowed = bool(mode.st_mode & 0o001)
        if not allowed:
            raise SandboxError(
                f"the sandbox servers run as OS user {run_as.name!r} (PostgreSQL refuses root), "
                f"who cannot enter {directory} (mode {oct(mode.st_mode & 0o777)}): create the "
                "Sandbox under a directory others may traverse (the default, the system temp "
                f"dir, works), or `chmod o+x {directory}`")


def _write(path: Path, data: str | bytes, run_as: _RunAs, mode: int = 0o600) -> None:
    """Write a file readable by the server's OS user only (``mode``), owned by that user."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    os.chmod(path, mode)
    _chown(path, run_as)


def _child_env(home: Path) -> dict[str, str]:
    """A small, predictable environment: English messages, UTC, no PG*/MYSQL* overrides."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C",
        "LC_ALL": "C",
        "TZ": "UTC",
    }


def _user_kwargs(run_as: _RunAs) -> dict[str, Any]:
    if not run_as.switch:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def _run(cmd: Sequence[str], run_as: _RunAs, cwd: Path, timeout: float) -> str:
    """Run a setup command as the server's user; return its output or raise SandboxError."""
    try:
        result = subprocess.run(  # noqa: S603 - argv built from resolved binaries, no shell
            list(cmd), cwd=cwd, env=_child_env(cwd), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
            timeout=timeout, check=False, umask=0o077, **_user_kwargs(run_as))
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"`{_short(cmd)}` did not finish within {timeout:.0f}s") from exc
    except OSError as exc:
        raise SandboxError(f"could not run `{_short(cmd)}` as {run_as.name}: {exc}") from exc
    if result.returncode != 0:
        raise SandboxError(
            f"`{_short(cmd)}` failed (exit {result.returncode}) as OS user {run_as.name}:\n"
            f"{_excerpt(result.stdout)}")
    return str(result.stdout)


def _short(cmd: Sequence[str]) -> str:
    return " ".join(str(part) for part in cmd[:3]) + (" ..." if len(cmd) > 3 else "")


def _excerpt(text: str) -> str:
    """The lines of ``text`` that name an error, then its tail (tools bury the cause early)."""
    lines = text.rstrip().splitlines()
    errors = [line for line in lines[:-30] if re.search(r"error|fatal|abort|signal", line, re.I)]
    head = ["[error lines]", *errors[:20], "[last lines]"] if errors else []
    return "\n".join([*head, *lines[-30:]])


def _tail_text(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return _tail_text(text, lines) or f"({path} is empty)"


def _pg_quote(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _mysql_native_hash(password: str) -> str:
    """``mysql_native_password`` hash of ``password``: ``*`` + upper hex SHA1(SHA1(password)).

    Computed here so that only the hash, never the plaintext, is sent to (and logged by) the
    server. SHA-1 is what the protocol defines; it is not our choice of hash.
    """
    inner = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


def _mariadb_init_sql(admin_hash: str) -> str:
    """The ``--init-file`` run once at start-up: admin account, ``appdb``, no anonymous users.

    Built from module constants and a hex hash only (no caller data).
    """
    account = f"'{ADMIN_USER}'@'%'"
    return "".join(f"{statement};\n" for statement in (
        "DELETE FROM mysql.global_priv WHERE User = ''",
        "FLUSH PRIVILEGES",
        f"CREATE USER {account} IDENTIFIED BY PASSWORD '{admin_hash}'",
        f"GRANT ALL PRIVILEGES ON *.* TO {account} WITH GRANT OPTION",
        f"CREATE DATABASE `{DBNAME}` CHARACTER SET utf8mb4",
    ))


# --------------------------------------------------------------------------------------------
# Finding the server binaries
# --------------------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(part) for part in parts)


def find_postgres_bindir() -> Path:
    """The directory holding PostgreSQL's ``initdb`` and ``postgres``.

    Tried in order: ``pg_config --bindir``; ``/usr/lib/postgresql/<highest version>/bin``
    (Debian/Ubuntu); ``initdb`` on PATH.
    """
    tried: list[str] = []

    def usable(bindir: Path) -> bool:
        return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(  # noqa: S603 - resolved binary, fixed argument
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False)
            bindir = Path(out.stdout.strip())
            if out.returncode == 0 and out.stdout.strip() and usable(bindir):
                return bindir
            tried.append(f"pg_config --bindir ({out.stdout.strip() or 'no answer'}: "
                         "no initdb/postgres there)")
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"pg_config --bindir ({exc})")
    else:
        tried.append("pg_config (not on PATH)")

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version_key)
    for initdb in reversed(candidates):
        if usable(initdb.parent):
            return initdb.parent
    tried.append("/usr/lib/postgresql/*/bin (none with initdb and postgres)")

    initdb_path = shutil.which("initdb")
    if initdb_path:
        bindir = Path(os.path.realpath(initdb_path)).parent
        if usable(bindir):
            return bindir
        tried.append(f"PATH ({initdb_path} has no `postgres` beside it)")
    else:
        tried.append("PATH (no initdb)")
    raise SandboxError(
        "PostgreSQL server binaries (initdb, postgres) not found; tried "
        + "; ".join(tried) + f". To fix: {INSTALL_HINT}")


# Debian puts daemons in sbin, which a non-root PATH often lacks.
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


def _locate(names: Sequence[str]) -> Path | None:
    """The first of ``names`` found on PATH or in :data:`_SBIN_DIRS`."""
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
        for directory in _SBIN_DIRS:
            candidate = Path(directory) / name
            if os.access(candidate, os.X_OK):
                return candidate
    return None


def find_mariadb_binaries() -> tuple[Path, Path]:
    """``(server, install_db)``: ``mariadbd``/``mysqld`` and ``mariadb-install-db``.

    Searched on PATH, then in /usr/sbin, /usr/local/sbin, /usr/bin, /usr/local/bin. The server
    must be MariaDB (MySQL's ``mysqld`` has a different bootstrap and option set).
    """
    server = _locate(("mariadbd", "mysqld"))
    install_db = _locate(("mariadb-install-db", "mysql_install_db"))
    where = "PATH, " + ", ".join(_SBIN_DIRS)
    if server is None or install_db is None:
        missing = [name for name, found in (("mariadbd (or mysqld)", server),
                                            ("mariadb-install-db (or mysql_install_db)",
                                             install_db)) if found is None]
        raise SandboxError(
            f"MariaDB server binaries not found: {', '.join(missing)} (searched {where}). "
            f"To fix: {INSTALL_HINT}")
    try:
        version = subprocess.run(  # noqa: S603 - resolved binary, fixed argument
            [str(server), "--version"], capture_output=True, text=True, timeout=30,
            check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"`{server} --version` failed: {exc}. To fix: {INSTALL_HINT}") from exc
    if "mariadb" not in version.lower():
        raise SandboxError(
            f"{server} is not a MariaDB server ({version.strip() or 'no version output'}); the "
            f"sandbox needs MariaDB. To fix: {INSTALL_HINT}")
    return server, install_db


# SCRAM pass-through (logging in to the server with the client's SCRAM keys, so no password
# needs to be stored in PgBouncer) arrived in 1.14.
_PGBOUNCER_MIN_VERSION = (1, 14)


def _version_of(binary: Path, pattern: str, product: str) -> re.Match[str]:
    """``pattern``'s match in what ``binary --version`` prints; SandboxError when it cannot run
    or prints no such version."""
    try:
        output = subprocess.run(  # noqa: S603 - resolved binary, fixed argument
            [str(binary), "--version"], capture_output=True, text=True, timeout=30,
            check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxError(f"`{binary} --version` failed: {exc}. To fix: {INSTALL_HINT}") from exc
    match = re.search(pattern, output)
    if match is None:
        raise SandboxError(f"{binary} --version printed no {product} version "
                           f"({output.strip()[:200] or 'no output'})")
    return match


def find_pgbouncer() -> tuple[Path, str]:
    """``(binary, version)`` of PgBouncer (1.14 or newer), searched like the MariaDB binaries."""
    binary = _locate(("pgbouncer",))
    if binary is None:
        raise SandboxError(
            f"PgBouncer not found (searched PATH, {', '.join(_SBIN_DIRS)}). "
            f"To fix: {INSTALL_HINT}")
    match = _version_of(binary, r"PgBouncer (\d+)\.(\d+)(?:\.\d+)?", "PgBouncer")
    version = tuple(int(part) for part in match.groups())
    if version < _PGBOUNCER_MIN_VERSION:
        raise SandboxError(
            f"{binary} is {match.group(0)}; the sandbox needs PgBouncer 1.14 or newer (SCRAM "
            f"pass-through with auth_query). To fix: install a newer pgbouncer package")
    return binary, match.group(0).split()[1]


# ACL users (and `#<sha256>` password hashes) arrived in 6.0; so did TLS.
_REDIS_MIN_VERSION = (6, 0)


def find_redis_server() -> tuple[Path, str]:
    """``(binary, version)`` of ``redis-server`` (6.0 or newer), searched like the MariaDB
    binaries."""
    binary = _locate(("redis-server",))
    if binary is None:
        raise SandboxError(
            f"Redis server binary (redis-server) not found (searched PATH, "
            f"{', '.join(_SBIN_DIRS)}). To fix: {INSTALL_HINT}")
    match = _version_of(binary, r"v=(\d+)\.(\d+)\.(\d+)", "Redis")
    version = tuple(int(part) for part in match.groups())
    if version[:2] < _REDIS_MIN_VERSION:
        raise SandboxError(
            f"{binary} is Redis {'.'.join(map(str, version))}; the sandbox needs Redis 6.0 or "
            "newer (ACL users, TLS). To fix: install a newer redis-server package")
    return binary, ".".join(map(str, version))


# --------------------------------------------------------------------------------------------
# Login counting (pure functions over log text)
# --------------------------------------------------------------------------------------------

# log_line_prefix = '%m [%p] ' with log_timezone = 'UTC' and lc_messages = 'C':
#   2026-11-23 13:14:32.033 UTC [9328] LOG:  connection authorized: user=... database=...
# Continuation lines (DETAIL bodies, multi-line statements) start with a tab and are skipped.
_PG_RECORD = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \S+ \[(?P<pid>\d+)\] "
    r"(?P<level>[A-Z]+[0-9]?):  (?P<msg>.*)$", re.MULTILINE)
_PG_LOGIN_FAILED = re.compile(
    r"authentication failed for user "      # password, md5, scram, ident, peer, ldap, cert, ...
    r"|^no pg_hba\.conf entry for "
    r"|^pg_hba\.conf rejects connection for "
    r'|^role ".*" is not permitted to log in'
    r'|^role ".*" does not exist'
    r'|^database ".*" does not exist'
    r"|^permission denied for database "
    r"|^too many connections for (?:role|database) "
    r"|^sorry, too many clients already"
    r"|^database \".*\" is not currently accepting connections")


def _count_postgres_logins(text: str) -> LoginCounts:
    """Count logins in a PostgreSQL server log (``log_connections = on``).

    Each ``connection received`` line starts an attempt of that backend (one process per
    connection). The attempt succeeded when the backend logs ``connection authorized:`` and no
    login FATAL follows; it failed on a login FATAL: ``password authentication failed``, ``no
    pg_hba.conf entry`` (e.g. a non-TLS attempt on the TLS server), ``pg_hba.conf rejects``, and
    the refusals PostgreSQL raises just after authenticating (unknown database, ``NOLOGIN`` role,
    connection limits). Attempts that never got that far (TLS handshake aborted, server starting
    up or shutting down) count as neither. FATALs later in a session (terminated by an admin,
    client gone) are not logins and are ignored.

    libpq with ``sslmode=prefer``/``allow`` retries a refused login on a second connection, which
    the server rightly logs as two failed attempts.
    """
    outcomes: list[str | None] = []
    current: dict[str, int] = {}
    for match in _PG_RECORD.finditer(text):
        pid, level, msg = match.group("pid", "level", "msg")
        if level == "LOG" and msg.startswith("connection received:"):
            current[pid] = len(outcomes)
            outcomes.append(None)
            continue
        if level == "LOG" and msg.startswith("connection authorized:"):
            outcome = "ok"
        elif level == "FATAL" and _PG_LOGIN_FAILED.search(msg):
            outcome = "failed"
        else:
            continue
        index = current.get(pid)
        if index is None:  # `since` cut off its "connection received" line
            index = current[pid] = len(outcomes)
            outcomes.append(None)
        if outcomes[index] != "failed":
            outcomes[index] = outcome
    return LoginCounts(succeeded=outcomes.count("ok"), failed=outcomes.count("failed"))


# General log (log_output=FILE), e.g.:
#   261123 13:14:05\t     5 Connect\tu@127.0.0.1 on appdb using SSL/TLS
#   \t\t     5 Connect\tAccess denied for user 'u'@'127.0.0.1' (using password: YES)
_MARIADB_RECORD = re.compile(
    r"^(?:\d{6} [ \d]\d:\d\d:\d\d)?\t+ *(?P<id>\d+) (?P<command>[A-Za-z][A-Za-z ]*?)\t"
    r"(?P<arg>.*)$", re.MULTILINE)


def _count_mariadb_logins(text: str) -> LoginCounts:
    """Count logins in a MariaDB general log.

    MariaDB 10.11 writes a ``Connect`` record *before* it checks the password
    (``user@host on db using SSL/TLS``) and, when the login fails, a second record for the same
    connection id: ``Connect  Access denied for user ...`` (wrong password, unknown user, no TLS
    under ``require_secure_transport``), or ``Init DB  Access denied for user ... to database``
    (right password, database not allowed or missing). So each connection id is one attempt:
    failed if such a record follows its ``Connect`` before anything else, else succeeded. An
    ``Access denied`` for ``Init DB`` later in a session (a ``USE``) is not a login. A
    ``Change user`` (COM_CHANGE_USER) is a new attempt on the same connection.
    """
    outcomes: list[str] = []
    current: dict[str, int] = {}
    logging_in: set[str] = set()
    for match in _MARIADB_RECORD.finditer(text):
        conn_id, command, arg = match.group("id", "command", "arg")
        denied = arg.startswith("Access denied for user")
        if command in ("Connect", "Change user") and not denied:
            current[conn_id] = len(outcomes)
            outcomes.append("ok")
            logging_in.add(conn_id)
        elif denied and (command in ("Connect", "Change user")
                         or (command == "Init DB" and conn_id in logging_in)):
            index = current.get(conn_id)
            if index is None:  # `since` cut off the first record of this attempt
                index = current[conn_id] = len(outcomes)
                outcomes.append("failed")
            outcomes[index] = "failed"
            logging_in.discard(conn_id)
        else:
            logging_in.discard(conn_id)
    return LoginCounts(succeeded=outcomes.count("ok"), failed=outcomes.count("failed"))


# PgBouncer 1.18 (log_connections = 1), client lines only ("S-0x..." lines are its server side):
#   2026-11-23 13:14:32.033 UTC [9328] LOG C-0x55d1...: appdb/u@127.0.0.1:38006 login attempt: ...
#   2026-11-23 13:14:32.040 UTC [9328] WARNING C-0x55d1...: appdb/u@127.0.0.1:38006 pooler error:
#   SASL authentication failed
# The C-0x address is a reused slot; the client's ip:port names one connection.
_PGB_CLIENT_RECORD = re.compile(
    r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \S+ \[\d+\] (?P<level>[A-Z]+) "
    r"C-0x[0-9a-f]+: .*?@(?P<client>[0-9A-Fa-f.:\[\]]+:\d+) (?P<msg>.*)$", re.MULTILINE)
_PGB_LOGIN_FAILED = re.compile(
    r"^login failed:"
    r"|^password authentication failed"
    r"|^pooler error: (?:SASL authentication failed|password authentication failed"
    r"|no such user|no such database|SSL required|unsupported startup parameter"
    r"|server login has been failing|pgbouncer cannot connect to server"
    r"|no more connections allowed|client_login_timeout|bouncer config error)")


def _count_pgbouncer_logins(text: str) -> LoginCounts:
    """Count client logins to PgBouncer in its log (``log_connections = 1``).

    Each client connection (its ip:port) is one attempt. PgBouncer logs ``login attempt:`` once
    it knows the user, *before* checking the password, so the attempt succeeded unless a login
    error follows for that connection: a failed password (``password authentication failed``,
    ``pooler error: SASL authentication failed``), an unknown user or database, no TLS (``SSL
    required``), a refused startup parameter (``unsupported startup parameter: options``), or
    no server login possible. Errors on a connection that never logged ``login attempt`` (no
    TLS, refused parameter) are failed attempts too. Errors that only happen later in a session
    (timeouts, closed servers) are not logins and are ignored.
    """
    outcomes: list[str] = []
    current: dict[str, int] = {}
    for match in _PGB_CLIENT_RECORD.finditer(text):
        client, msg = match.group("client", "msg")
        if msg.startswith("login attempt:"):
            current[client] = len(outcomes)
            outcomes.append("ok")
        elif _PGB_LOGIN_FAILED.search(msg):
            index = current.get(client)
            if index is None:  # refused before it named a user, or `since` cut the attempt
                index = current[client] = len(outcomes)
                outcomes.append("failed")
            outcomes[index] = "failed"
    return LoginCounts(succeeded=outcomes.count("ok"), failed=outcomes.count("failed"))


# --------------------------------------------------------------------------------------------
# Server handles
# --------------------------------------------------------------------------------------------


class ServerHandle:
    """One running throwaway server. Made by :class:`Sandbox`; do not construct it yourself.

    Attributes: ``engine`` (``"postgres"``, ``"mariadb"`` or ``"pgbouncer"``), ``host`` (always
    ``127.0.0.1``), ``port``, ``admin_user``/``admin_password`` (a superuser; the password is
    kept out of ``repr``), ``dbname`` (``appdb``), ``ca_file`` (PEM of the CA that signed the
    server certificate), ``tls`` (False only for ``Sandbox.postgres(tls=False)``), ``log_file``
    (the log that records logins and statements; PgBouncer's own log for a pooler), ``directory``
    (the server's own directory) and ``startup_seconds`` (wall time from ``initdb``/
    ``mariadb-install-db``/the pooler's set-up to the first successful login).
    """

    engine: str = ""
    _stop_signal: signal.Signals = signal.SIGTERM
    _stop_timeout: float = _STOP_TIMEOUT

    def __init__(self, *, port: int, admin_password: str, ca_file: Path, log_file: Path,
                 directory: Path, process: subprocess.Popen[bytes], tls: bool,
                 extra_logs: Sequence[Path] = ()) -> None:
        self.host = HOST
        self.port = port
        self.admin_user = ADMIN_USER
        self.admin_password = admin_password
        self.dbname = DBNAME
        self.ca_file = str(ca_file)
        self.log_file = log_file
        self.directory = directory
        self.tls = tls
        self.startup_seconds = 0.0
        self._process = process
        self._extra_logs = tuple(extra_logs)
        self._stop_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<{type(self).__name__} {self.engine} {self.host}:{self.port} "
                f"tls={self.tls} admin_user={self.admin_user!r} pid={self.pid} {state}>")

    # -- process ------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The server's main process id (postmaster / mariadbd)."""
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        """Shut the server down (fast mode), SIGKILL it after a timeout, and reap it. Idempotent.

        The server's directory (data, logs) stays until :meth:`Sandbox.close` removes the sandbox.
        """
        with self._stop_lock:
            process = self._process
            if process.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self._stop_signal)
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                try:
                    process.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired as exc:
                    raise SandboxError(
                        f"{self.engine} server pid {process.pid} survived SIGKILL") from exc

    # -- logs ---------------------------------------------------------------------------------

    def log_text(self) -> str:
        """The whole log (PostgreSQL server log / MariaDB general log) as text."""
        try:
            return self.log_file.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_position(self) -> int:
        """The log's current size in bytes: pass it as ``since`` to :meth:`login_counts`."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, since: int) -> str:
        try:
            with self.log_file.open("rb") as handle:
                start = max(0, since - 1)
                handle.seek(start)
                raw = handle.read()
        except FileNotFoundError:
            return ""
        if since > 0:
            if raw[:1] == b"\n":
                raw = raw[1:]
            else:  # `since` is mid-line: skip the rest of that line
                _, _, raw = raw.partition(b"\n")
        return raw.decode("utf-8", errors="replace")

    def login_counts(self, since: int = 0) -> LoginCounts:
        """Successful and failed logins (any user) recorded after byte offset ``since``.

        Every login counts, including the sandbox's own admin logins (the readiness check when
        the server started, :meth:`admin_connect`, :meth:`create_login_user`, :meth:`drop_user`):
        they are real logins. Take :meth:`log_position` right before the part you measure.
        """
        raise NotImplementedError

    def _startup_failure(self, what: str) -> SandboxError:
        logs = "\n".join(f"--- tail of {path} ---\n{_tail(path)}"
                         for path in (self.log_file, *self._extra_logs))
        return SandboxError(f"{self.engine} sandbox server on port {self.port}: {what}\n{logs}")

    # -- SQL ----------------------------------------------------------------------------------

    def admin_connect(self) -> Any:
        """A new autocommit connection to ``appdb`` as the admin, TLS verified against ca_file."""
        raise NotImplementedError

    def create_login_user(self, username: str, password: str, *,
                          can_create_roles: bool = False) -> None:
        """Create a login user with ``password`` (hashed client-side; never sent in plaintext)."""
        raise NotImplementedError

    def drop_user(self, username: str) -> None:
        """Drop the user if it exists (with the privileges granted to it)."""
        raise NotImplementedError


class _PostgresServer(ServerHandle):
    engine = "postgres"
    _stop_signal = signal.SIGINT  # "fast" shutdown, as `pg_ctl stop -m fast`

    def _connect(self, dbname: str, connect_timeout: int = 10) -> Any:
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.admin_user, password=self.admin_password,
            dbname=dbname, sslmode="verify-full" if self.tls else "disable",
            sslrootcert=self.ca_file, gssencmode="disable", connect_timeout=connect_timeout,
            autocommit=True)

    def admin_connect(self) -> Any:
        return self._connect(self.dbname)

    def login_counts(self, since: int = 0) -> LoginCounts:
        return _count_postgres_logins(self._log_since(since))

    def create_login_user(self, username: str, password: str, *,
                          can_create_roles: bool = False) -> None:
        from psycopg import sql

        with self.admin_connect() as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), username.encode(), b"scram-sha-256").decode()
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN{} PASSWORD {}").format(
                sql.Identifier(username), sql.SQL(" CREATEROLE" if can_create_roles else ""),
                sql.Literal(verifier)))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(self.dbname), sql.Identifier(username)))

    def drop_user(self, username: str) -> None:
        from psycopg import sql

        with self.admin_connect() as conn:
            found = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                 (username,)).fetchone()
            if found is None:
                return
            # DROP OWNED also revokes its privileges on shared objects (GRANT CONNECT above).
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(username)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(username)))

    def _wait_ready(self, deadline: float, pidfile: Path) -> None:
        """Wait for the postmaster to report "ready" in postmaster.pid, then log in over TLS.

        The pid file is what ``pg_ctl -w`` watches; it involves no connection, so the log shows
        exactly one login from start-up: the admin login that creates ``appdb``.
        """
        while True:
            if self._process.poll() is not None:
                raise self._startup_failure(f"postgres exited with code {self._process.returncode}")
            try:
                lines = pidfile.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                break
            if time.monotonic() > deadline:
                raise self._startup_failure("not ready before the start-up timeout")
            time.sleep(0.02)
        import psycopg
        from psycopg import sql

        while True:
            remaining = max(1, int(deadline - time.monotonic()))
            try:
                with self._connect("postgres", connect_timeout=min(10, remaining)) as conn:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(
                        sql.Identifier(self.dbname)))
                return
            except psycopg.OperationalError as exc:
                transient = "starting up" in str(exc) or "Connection refused" in str(exc)
                if not transient or time.monotonic() > deadline:
                    raise self._startup_failure(f"admin TLS login failed: {exc}") from exc
                time.sleep(0.05)


class _MariaDBServer(ServerHandle):
    engine = "mariadb"
    _stop_signal = signal.SIGTERM

    def admin_connect(self) -> Any:
        return self._connect(database=self.dbname)

    def _connect(self, database: str | None, connect_timeout: int = 10) -> Any:
        import ssl

        import pymysql

        context = ssl.create_default_context(cafile=self.ca_file)  # verifies + checks hostname
        return pymysql.connect(
            host=self.host, port=self.port, user=self.admin_user, password=self.admin_password,
            database=database, ssl=context, autocommit=True, charset="utf8mb4",
            connect_timeout=connect_timeout)

    def login_counts(self, since: int = 0) -> LoginCounts:
        """Count logins in the general log after ``since`` (see :func:`_count_mariadb_logins`).

        No ``FLUSH LOGS`` is needed, and none is done (it would need an admin login, which would
        itself be counted): with ``log_output=FILE`` MariaDB flushes its log cache after every
        general-log record, and it writes the ``Connect``/``Access denied`` records before it
        answers the client, so a login is in the file by the time the client's connect returns.
        """
        return _count_mariadb_logins(self._log_since(since))

    def create_login_user(self, username: str, password: str, *,
                          can_create_roles: bool = False) -> None:
        account = "%s@'%%'"  # the user name is a query argument, escaped by PyMySQL
        statements = [
            (f"CREATE USER {account} IDENTIFIED BY PASSWORD %s",
             (username, _mysql_native_hash(password))),
            (f"GRANT SELECT ON `{self.dbname}`.* TO {account}", (username,)),
        ]
        if can_create_roles:
            statements += [
                (f"GRANT CREATE USER ON *.* TO {account} WITH GRANT OPTION", (username,)),
                (f"GRANT ALL PRIVILEGES ON `{self.dbname}`.* TO {account} WITH GRANT OPTION",
                 (username,)),
                (f"GRANT SELECT ON `mysql`.* TO {account}", (username,)),
            ]
        conn = self.admin_connect()
        try:
            with conn.cursor() as cursor:
                for statement, args in statements:
                    cursor.execute(statement, args)
        finally:
            conn.close()

    def drop_user(self, username: str) -> None:
        conn = self.admin_connect()
        try:
            with conn.cursor() as cursor:
                cursor.execute("DROP USER IF EXISTS %s@'%%'", (username,))
        finally:
            conn.close()

    def _wait_ready(self, deadline: float, error_log: Path) -> None:
        """Wait for "ready for connections" in the error log, then one admin TLS login."""
        while True:
            if self._process.poll() is not None:
                raise self._startup_failure(f"mariadbd exited with code {self._process.returncode}")
            try:
                if b"ready for connections" in error_log.read_bytes():
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise self._startup_failure("not ready before the start-up timeout")
            time.sleep(0.02)
        try:
            conn = self._connect(database=self.dbname,
                                 connect_timeout=max(1, min(10, int(deadline - time.monotonic()))))
        except Exception as exc:
            raise self._startup_failure(f"admin TLS login failed: {exc}") from exc
        conn.close()


class _PgBouncerServer(ServerHandle):
    """PgBouncer in front of a sandbox PostgreSQL (``backend``).

    ``host``/``port``/``dbname``/``ca_file`` are what a client uses to go through the pooler.
    Users live in PostgreSQL, so :meth:`admin_connect`, :meth:`create_login_user` and
    :meth:`drop_user` act on ``backend`` directly (superusers, the sandbox admin included, are
    not looked up through the pooler at all). ``log_file`` is PgBouncer's own log;
    :meth:`login_counts` counts client logins *to PgBouncer* (``backend.login_counts`` counts
    PgBouncer's logins to the server).
    """

    engine = "pgbouncer"
    # Immediate shutdown up to 1.22. From 1.23 SIGTERM waits for clients to leave; the sandbox's
    # clients are gone by then, and the SIGKILL fallback covers any that are not.
    _stop_signal = signal.SIGTERM
    _stop_timeout = 5.0

    def __init__(self, *, backend: ServerHandle, pool_mode: str, auth_user: str,
                 version: str, **kwargs: Any) -> None:
        super().__init__(admin_password=backend.admin_password, **kwargs)
        self.backend = backend
        self.pool_mode = pool_mode
        self.auth_user = auth_user
        self.version = version

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<{type(self).__name__} {self.version} {self.host}:{self.port} "
                f"pool_mode={self.pool_mode} -> {self.backend.host}:{self.backend.port} "
                f"pid={self.pid} {state}>")

    def admin_connect(self) -> Any:
        return self.backend.admin_connect()

    def create_login_user(self, username: str, password: str, *,
                          can_create_roles: bool = False) -> None:
        self.backend.create_login_user(username, password, can_create_roles=can_create_roles)

    def drop_user(self, username: str) -> None:
        self.backend.drop_user(username)

    def login_counts(self, since: int = 0) -> LoginCounts:
        return _count_pgbouncer_logins(self._log_since(since))

    def _wait_ready(self, deadline: float, auth_password: str) -> None:
        """Wait for the listener, then one login as the ``auth_user`` through the pooler.

        That login proves client TLS, PgBouncer's verify-full TLS login to PostgreSQL, and the
        lookup function (it must answer for a user, without handing the verifier out here).
        """
        while b"process up" not in self.log_file.read_bytes():
            if self._process.poll() is not None:
                raise self._startup_failure(
                    f"pgbouncer exited with code {self._process.returncode}")
            if time.monotonic() > deadline:
                raise self._startup_failure("not ready before the start-up timeout")
            time.sleep(0.01)
        import psycopg

        try:
            with psycopg.connect(
                    host=self.host, port=self.port, user=self.auth_user, password=auth_password,
                    dbname=self.dbname, sslmode="verify-full", sslrootcert=self.ca_file,
                    gssencmode="disable", autocommit=True,
                    connect_timeout=max(1, min(10, int(deadline - time.monotonic())))) as conn:
                found = conn.execute(_PGBOUNCER_PROBE, (self.auth_user,)).fetchone()
        except psycopg.Error as exc:
            raise self._startup_failure(f"login through the pooler failed: {exc}") from exc
        if not found or found[0] != 1:
            raise self._startup_failure("the auth_query lookup function found no user")


def _redis_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _redis_sha256(password: str) -> str:
    """What Redis stores for a password: its SHA-256, so only the hash is in the configuration."""
    return hashlib.sha256(password.encode()).hexdigest()


# MONITOR lines: 1796100067.123456 [0 127.0.0.1:36950] "AUTH" "(redacted)" "(redacted)"
_REDIS_LOGIN = re.compile(r'^\S+ \[[^\]]*\] (?:"AUTH"|"HELLO" .*"AUTH")', re.IGNORECASE | re.M)
_REDIS_SYNC = "rotation-sandbox-sync-"
# What the sandbox's app users may do (create_login_user): their data, PING, and changing
# passwords, which single-user rotation needs on Redis (there is no command for one's own
# password alone). Masters (can_create_roles) get everything.
_REDIS_APP_RULES = ("~*", "&*", "+@read", "+@write", "+@connection", "+acl|setuser")
_REDIS_MASTER_RULES = ("~*", "&*", "+@all")


class _RedisServer(ServerHandle):
    """Redis with TLS only and ACL users (see the module docstring).

    ``log_file`` is ``monitor.log``, what a ``MONITOR`` connection opened at start-up saw;
    :meth:`log_position` and :meth:`login_counts` first wait until it caught up with the server
    (an ``ECHO`` marker sent on the sandbox's own admin connection comes back through it).
    :meth:`create_login_user` and :meth:`drop_user` use that connection too, so they are no
    logins; :meth:`admin_connect` is one. ``dbname`` is ``"0"`` (Redis numbers its databases;
    the adapter does not use it).
    """

    engine = "redis"
    _stop_signal = signal.SIGTERM  # shutdown without saving (save "")

    def __init__(self, *, version: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.dbname = "0"
        self._control: Any = None
        self._control_lock = threading.Lock()
        self._recorder: threading.Thread | None = None
        self._monitor: Any = None
        self._seen = threading.Condition()
        self._markers: set[str] = set()
        self._failure_marks: dict[int, int] = {0: 0}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<{type(self).__name__} {self.version} {self.host}:{self.port} tls=True "
                f"admin_user={self.admin_user!r} pid={self.pid} {state}>")

    # -- connections ---------------------------------------------------------------------------

    def _connection(self, timeout: float | None = 10.0) -> Any:
        """An admin connection (TLS verified against ca_file, one AUTH, no retries)."""
        import redis.connection

        conn = redis.connection.SSLConnection(
            host=self.host, port=self.port, username=self.admin_user,
            password=self.admin_password, ssl_ca_certs=self.ca_file, ssl_cert_reqs="required",
            ssl_check_hostname=True, protocol=2, driver_info=None, socket_timeout=timeout,
            socket_connect_timeout=10.0)
        conn.connect()  # type: ignore[no-untyped-call]
        return conn

    def admin_connect(self) -> Any:
        """A ``redis.Redis`` client logged in as the admin (``execute_command``, ``close``)."""
        import redis

        return redis.Redis(host=self.host, port=self.port, username=self.admin_user,
                           password=self.admin_password, ssl=True, ssl_ca_certs=self.ca_file,
                           ssl_cert_reqs="required", ssl_check_hostname=True, protocol=2,
                           single_connection_client=True, socket_timeout=10,
                           socket_connect_timeout=10, driver_info=None)

    def command(self, *args: str) -> Any:
        """Run one command on the sandbox's own admin connection (no new login)."""
        with self._control_lock:
            if self._control is None:
                raise SandboxError(f"redis sandbox server on port {self.port} is stopped")
            self._control.send_command(*args)
            return self._control.read_response()

    # -- users ---------------------------------------------------------------------------------

    def create_login_user(self, username: str, password: str, *,
                          can_create_roles: bool = False) -> None:
        """An ACL user with the SHA-256 of ``password``: its data, PING and ``+acl|setuser``
        (single-user rotation changes its own password with it); ``can_create_roles``: +@all."""
        rules = _REDIS_MASTER_RULES if can_create_roles else _REDIS_APP_RULES
        self.command("ACL", "SETUSER", username, "reset", "on",
                     f"#{_redis_sha256(password)}", *rules)

    def drop_user(self, username: str) -> None:
        self.command("ACL", "DELUSER", username)

    def acl_rules(self, username: str) -> str | None:
        """The user's ``ACL LIST`` line, or None."""
        prefix = f"user {username} "
        for line in self.command("ACL", "LIST"):
            text = _redis_text(line)
            if text.startswith(prefix):
                return text
        return None

    # -- logs ----------------------------------------------------------------------------------

    def _sync(self, timeout: float = 10.0) -> None:
        """Wait until the MONITOR recorder has written everything the server ran before now."""
        if self._recorder is None or not self._recorder.is_alive():
            return
        marker = _REDIS_SYNC + secrets.token_hex(8)
        self.command("ECHO", marker)
        deadline = time.monotonic() + timeout
        with self._seen:
            while marker not in self._markers:
                left = deadline - time.monotonic()
                if left <= 0 or self._recorder is None or not self._recorder.is_alive():
                    raise SandboxError(f"the MONITOR recorder of redis on port {self.port} "
                                       "did not catch up")
                self._seen.wait(min(left, 0.5))
            self._markers.discard(marker)

    def _auth_failures(self) -> int:
        """Failed logins since start-up: the ``ACL LOG`` entries of reason ``auth`` (Redis
        folds repeats into one entry and counts them)."""
        total = 0
        for entry in self.command("ACL", "LOG", "100000"):
            fields = dict(zip(entry[::2], entry[1::2], strict=False))
            if _redis_text(fields.get(b"reason", b"")) == "auth":
                total += int(fields.get(b"count", 0))
        return total

    def log_position(self) -> int:
        if not self.running:
            return super().log_position()
        self._sync()
        position = super().log_position()
        self._failure_marks[position] = self._auth_failures()
        return position

    def login_counts(self, since: int = 0) -> LoginCounts:
        """``AUTH`` commands MONITOR saw after ``since`` (take it from :meth:`log_position`),
        of which ``failed`` are the ``ACL LOG`` auth failures since then."""
        self._sync()
        attempts = len(_REDIS_LOGIN.findall(self._log_since(since)))
        before = self._failure_marks.get(since)
        if before is None:
            before = self._failure_marks[max(m for m in self._failure_marks if m <= since)]
        failed = self._auth_failures() - before
        return LoginCounts(succeeded=attempts - failed, failed=failed)

    def log_text(self) -> str:
        """The command stream: what MONITOR saw, then every SLOWLOG entry's arguments (Redis
        redacts AUTH and ACL SETUSER arguments in both), then the server's own log."""
        slowlog = ""
        if self.running:
            self._sync()
            entries = self.command("SLOWLOG", "GET", "-1")
            slowlog = "\n".join(" ".join(_redis_text(arg) for arg in entry[3])
                                for entry in reversed(entries))
        server_log = "\n".join(path.read_bytes().decode("utf-8", errors="replace")
                               for path in self._extra_logs if path.exists())
        return "\n".join([super().log_text(), "--- SLOWLOG ---", slowlog,
                          "--- server log ---", server_log])

    # -- process -------------------------------------------------------------------------------

    def stop(self) -> None:
        super().stop()
        with self._control_lock:
            control, self._control = self._control, None
        for conn in (control, self._monitor):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.disconnect()
        if self._recorder is not None:
            self._recorder.join(timeout=_STOP_TIMEOUT)

    def _record(self, conn: Any) -> None:
        """The recorder thread: every MONITOR line, as Redis sends it, to ``log_file``."""
        with self.log_file.open("ab") as out:
            while True:
                try:
                    line = _redis_text(conn.read_response())
                except Exception:  # the server stopped, or stop() closed the connection
                    break
                out.write(line.encode("utf-8", errors="replace") + b"\n")
                out.flush()
                if _REDIS_SYNC in line:
                    with self._seen:
                        self._markers.add(line.rsplit(" ", 1)[-1].strip('"'))
                        self._seen.notify_all()

    def _wait_ready(self, deadline: float, output: Path) -> None:
        """Wait for "Ready to accept connections", log in as the admin over verified TLS,
        check that ``default`` is off, and start the MONITOR recorder."""
        while True:
            if self._process.poll() is not None:
                raise self._startup_failure(
                    f"redis-server exited with code {self._process.returncode}")
            try:
                if b"Ready to accept connections" in output.read_bytes():
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise self._startup_failure("not ready before the start-up timeout")
            time.sleep(0.02)
        try:
            self._control = self._connection()
            default = self.acl_rules("default") or ""
            self._monitor = self._connection(timeout=None)
            self._monitor.send_command("MONITOR")
            self._monitor.read_response()
        except Exception as exc:
            raise self._startup_failure(f"admin TLS login failed: {exc}") from exc
        if not default.startswith("user default off "):
            raise self._startup_failure(f"the default user is not off: {default[:80]!r}")
        self.log_file.touch()
        self._recorder = threading.Thread(target=self._record, args=(self._monitor,),
                                          name=f"redis-monitor-{self.port}", daemon=True)
        self._recorder.start()
        self._sync()


# The lookup PgBouncer's docs recommend: a SECURITY DEFINER function (owned by the superuser,
# who may read pg_shadow) that only the auth_user may call, with a fixed search_path. It answers
# no rows for unknown users and for superusers (who have no business logging in through a pool).
# SETOF, not OUT parameters: a missing user must be "no row", not a row of NULLs.
_PGBOUNCER_LOOKUP_FUNCTION = """
CREATE OR REPLACE FUNCTION pgbouncer.user_lookup(i_username text)
RETURNS TABLE (uname text, phash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT usename::text, passwd::text FROM pg_catalog.pg_shadow
    WHERE usename = i_username AND NOT usesuper
$$
"""
_PGBOUNCER_AUTH_QUERY = "SELECT uname, phash FROM pgbouncer.user_lookup($1)"
_PGBOUNCER_PROBE = "SELECT count(*) FROM pgbouncer.user_lookup(%s)"
_POOL_MODES = ("session", "transaction", "statement")


# --------------------------------------------------------------------------------------------
# The sandbox
# --------------------------------------------------------------------------------------------

_registry_lock = threading.Lock()
_open_sandboxes: dict[int, Sandbox] = {}
_atexit_registered = False


def _close_open_sandboxes() -> None:
    """atexit hook: stop every server of every sandbox this process left open."""
    with _registry_lock:
        sandboxes = list(_open_sandboxes.values())
    for sandbox in sandboxes:
        if sandbox._owner_pid == os.getpid():
            with contextlib.suppress(Exception):
                sandbox.close()


class Sandbox:
    """Owns a temporary directory and the throwaway servers started in it.

    ``root``: the directory in which the sandbox creates its own unique sub-directory (default:
    the system temp dir); only that sub-directory is removed by :meth:`close`. Servers start on
    first use and are cached: :meth:`postgres` (one per ``tls`` flag), :meth:`mariadb`,
    :meth:`redis` and
    :meth:`pgbouncer` (one per PostgreSQL server and pool mode). A server whose handle was
    stopped is started afresh on the next call.

    ``startup_timeout`` bounds each server's start (initialisation, start, first admin login).
    Use it as a context manager, or call :meth:`close`; an ``atexit`` hook closes it otherwise.
    """

    def __init__(self, root: Path | None = None, *,
                 startup_timeout: float = _DEFAULT_STARTUP_TIMEOUT) -> None:
        if root is not None:
            root = Path(root)
            root.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="rotation-sandbox-",
                                          dir=None if root is None else str(root))).resolve()
        self.startup_timeout = startup_timeout
        self._owner_pid = os.getpid()
        self._lock = threading.RLock()
        self._servers: dict[str, ServerHandle] = {}
        self._all: list[ServerHandle] = []
        self._extra_dirs: list[Path] = []
        self._counter = 0
        self._tls: tuple[Path, bytes, bytes] | None = None
        self._closed = False
        global _atexit_registered
        with _registry_lock:
            if not _atexit_registered:
                atexit.register(_close_open_sandboxes)
                _atexit_registered = True
            _open_sandboxes[id(self)] = self

    def __repr__(self) -> str:
        return f"<Sandbox {self.root} servers={len(self._all)} closed={self._closed}>"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- public -------------------------------------------------------------------------------

    def postgres(self, *, tls: bool = True) -> ServerHandle:
        """A PostgreSQL server. ``tls=False``: ``ssl=off`` and ``host`` (not ``hostssl``) lines,
        to prove that clients fail closed against a server without TLS."""
        return self._get("postgres-tls" if tls else "postgres-plain",
                         lambda: self._start_postgres(tls))

    def mariadb(self) -> ServerHandle:
        """A MariaDB server with ``require_secure_transport=ON``."""
        return self._get("mariadb", self._start_mariadb)

    def pgbouncer(self, pg: ServerHandle, *, pool_mode: str = "transaction") -> ServerHandle:
        """PgBouncer in front of ``pg`` (a running TLS server of this sandbox), one per
        ``(pg, pool_mode)``. Clients connect with TLS to its ``host``/``port``, database
        ``appdb``, verifying against its ``ca_file``; it looks each user's SCRAM verifier up in
        ``pg`` at every login (``auth_query``), so password changes on ``pg`` apply at once."""
        if pool_mode not in _POOL_MODES:
            raise SandboxError(f"pool_mode {pool_mode!r} is not one of {', '.join(_POOL_MODES)}")
        if not isinstance(pg, _PostgresServer) or not pg.tls or pg not in self._all:
            raise SandboxError(f"{pg!r} is not a TLS PostgreSQL server of this sandbox: start "
                               "one with Sandbox.postgres()")
        if not pg.running:
            raise SandboxError(f"{pg!r} is stopped: PgBouncer needs it running")
        return self._get(f"pgbouncer-{pg.port}-{pool_mode}",
                         lambda: self._start_pgbouncer(pg, pool_mode))

    def redis(self) -> ServerHandle:
        """A Redis server (6.0+): TLS only, ACL users, the ``default`` user off; its handle
        counts logins and keeps the command stream through a MONITOR connection."""
        return self._get("redis", self._start_redis)

    def close(self) -> None:
        """Stop every server this sandbox started and remove its directory. Idempotent."""
        with self._lock:
            errors: list[str] = []
            for handle in reversed(self._all):  # a pooler before the server behind it
                try:
                    handle.stop()
                except SandboxError as exc:
                    errors.append(str(exc))
            self._servers.clear()
            if not self._closed:
                self._closed = True
                for directory in (*self._extra_dirs, self.root):
                    shutil.rmtree(directory, ignore_errors=True)
                with _registry_lock:
                    _open_sandboxes.pop(id(self), None)
            if errors:
                raise SandboxError("; ".join(errors))

    # -- internals ----------------------------------------------------------------------------

    def _get(self, key: str, start: Callable[[], ServerHandle]) -> ServerHandle:
        with self._lock:
            if self._closed:
                raise SandboxError(f"sandbox {self.root} is closed")
            handle = self._servers.get(key)
            if handle is None or not handle.running:
                handle = start()
                self._servers[key] = handle
            return handle

    def _server_dir(self, name: str, run_as: _RunAs) -> tuple[Path, Path]:
        """``(directory, socket_dir)`` for a new server, owned by its OS user."""
        _check_traversable(self.root, run_as)
        self._counter += 1
        directory = self.root / f"{name}-{self._counter}"
        directory.mkdir(mode=0o700)
        _chown(directory, run_as)
        if run_as.switch:
            # The server's OS user may traverse the sandbox root, not list or write it.
            os.chmod(self.root, 0o711)  # noqa: S103
        socket_dir = directory
        if len(str(directory)) > _MAX_SOCKET_DIR:
            socket_dir = Path(tempfile.mkdtemp(prefix="rsb-", dir="/tmp"))
            self._extra_dirs.append(socket_dir)
            _chown(socket_dir, run_as)
        return directory, socket_dir

    def _tls_material(self) -> tuple[Path, bytes, bytes]:
        """``(ca_file, server certificate PEM, server key PEM)``, made once per sandbox."""
        if self._tls is None:
            try:
                import trustme
            except ImportError as exc:
                raise SandboxError(
                    "the sandbox needs the `trustme` package for its TLS certificates: "
                    "pip install trustme (it is in the `test` extra)") from exc
            ca = trustme.CA(organization_name="rotation sandbox")
            cert = ca.issue_cert("localhost", HOST)
            ca_file = self.root / "ca.pem"
            ca_file.write_bytes(ca.cert_pem.bytes())
            os.chmod(ca_file, 0o644)
            self._tls = (ca_file, cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes())
        return self._tls

    def _ready(self, handle: ServerHandle, wait: Callable[[], None], log_file: Path,
               attempt: int) -> bool:
        """Register ``handle`` (so close() stops it) and ``wait`` until it serves. False when
        its port was taken between our probe and the server's bind and another attempt may
        follow (the server is stopped); any other failure raises."""
        self._all.append(handle)
        try:
            wait()
        except SandboxError:
            handle.stop()
            if attempt + 1 < _PORT_ATTEMPTS and "Address already in use" in _tail(log_file):
                return False
            raise
        return True

    def _spawn(self, cmd: Sequence[str], run_as: _RunAs, cwd: Path,
               output: Path) -> subprocess.Popen[bytes]:
        out: IO[bytes]
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            try:
                return subprocess.Popen(  # noqa: S603 - argv from resolved binaries, no shell
                    list(cmd), cwd=cwd, env=_child_env(cwd), stdin=subprocess.DEVNULL,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    umask=0o077, **_user_kwargs(run_as))
            except OSError as exc:
                raise SandboxError(f"could not start `{_short(cmd)}`: {exc}") from exc

    def _start_postgres(self, tls: bool) -> ServerHandle:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        bindir = find_postgres_bindir()
        run_as = _run_as_for("postgres")
        ca_file, cert_pem, key_pem = self._tls_material()
        directory, socket_dir = self._server_dir("postgres-tls" if tls else "postgres-plain",
                                                 run_as)
        data = directory / "data"
        log_file = directory / "server.log"
        password = secrets.token_urlsafe(24)

        pwfile = directory / "admin.pw"
        _write(pwfile, password, run_as)
        try:
            _run([str(bindir / "initdb"), "-D", str(data), "-U", ADMIN_USER,
                  f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale",
                  "--no-sync"], run_as, directory, timeout=self.startup_timeout)
        finally:
            pwfile.unlink(missing_ok=True)

        _write(directory / "server.crt", cert_pem, run_as, 0o644)
        _write(directory / "server.key", key_pem, run_as, 0o600)
        hba = "hostssl" if tls else "host"
        _write(data / "pg_hba.conf",
               "# rotation sandbox: password (SCRAM) logins from 127.0.0.1 only"
               + (", over TLS only\n" if tls else ", WITHOUT TLS (fail-closed tests)\n")
               + f"{hba}  all  all  127.0.0.1/32  scram-sha-256\n", run_as)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'sandbox.conf'\n")

        for attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            settings = {
                "listen_addresses": _pg_quote(HOST),
                "port": str(port),
                "unix_socket_directories": _pg_quote(str(socket_dir)),
                "unix_socket_permissions": "0700",
                "max_connections": "40",
                "shared_buffers": "16MB",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "ssl": "on" if tls else "off",
                "ssl_cert_file": _pg_quote(str(directory / "server.crt")),
                "ssl_key_file": _pg_quote(str(directory / "server.key")),
                "ssl_min_protocol_version": "'TLSv1.2'",
                "password_encryption": "'scram-sha-256'",
                "logging_collector": "off",
                "log_destination": "'stderr'",
                "log_connections": "on",
                "log_disconnections": "off",
                "log_statement": "'all'",
                "log_line_prefix": "'%m [%p] '",
                "log_timezone": "'UTC'",
                "timezone": "'UTC'",
                "lc_messages": "'C'",
            }
            _write(data / "sandbox.conf",
                   "".join(f"{key} = {value}\n" for key, value in settings.items()), run_as)
            process = self._spawn([str(bindir / "postgres"), "-D", str(data)], run_as,
                                  directory, log_file)
            handle = _PostgresServer(port=port, admin_password=password, ca_file=ca_file,
                                     log_file=log_file, directory=directory, process=process,
                                     tls=tls)
            pid_file = data / "postmaster.pid"
            if not self._ready(handle, partial(handle._wait_ready, deadline, pid_file),
                               log_file, attempt):
                continue  # someone took the port between our probe and the server's bind
            handle.startup_seconds = time.monotonic() - started
            return handle
        raise AssertionError("unreachable")

    def _start_mariadb(self) -> ServerHandle:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        server, install_db = find_mariadb_binaries()
        run_as = _run_as_for("mariadb")
        ca_file, cert_pem, key_pem = self._tls_material()
        directory, socket_dir = self._server_dir("mariadb", run_as)
        data = directory / "data"
        general_log = directory / "general.log"
        error_log = directory / "error.log"
        password = secrets.token_urlsafe(24)
        tmpdir = directory / "tmp"
        tmpdir.mkdir(mode=0o700)
        _chown(tmpdir, run_as)
        # A private tmpdir is not optional: at start-up mariadbd deletes every `#sql*` file in its
        # tmpdir, so servers sharing /tmp (parallel sandboxes, the machine's own server) break
        # each other's temporary tables; concurrent bootstraps fail or even crash.
        common = [f"--datadir={data}", f"--tmpdir={tmpdir}", "--innodb-log-file-size=8M",
                  "--innodb-buffer-pool-size=32M"]

        _run([str(install_db), "--no-defaults", *common, "--skip-test-db",
              "--skip-name-resolve"], run_as, directory, timeout=self.startup_timeout)
        _write(directory / "server.crt", cert_pem, run_as, 0o644)
        _write(directory / "server.key", key_pem, run_as, 0o600)
        _write(directory / "ca.pem", ca_file.read_bytes(), run_as, 0o644)
        # Runs once at start-up with full privileges; init-file statements are not written to
        # the general log, and the password is a client-side hash anyway.
        init_file = directory / "init.sql"
        _write(init_file, _mariadb_init_sql(_mysql_native_hash(password)), run_as)

        for attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            error_log.unlink(missing_ok=True)
            cmd = [
                str(server), "--no-defaults",  # must come first: ignore /etc/mysql entirely
                *common, f"--port={port}", f"--bind-address={HOST}",
                f"--socket={socket_dir / 'mysqld.sock'}", f"--pid-file={directory / 'mysqld.pid'}",
                f"--log-error={error_log}", "--log-warnings=2",
                "--general-log=1", f"--general-log-file={general_log}", "--log-output=FILE",
                "--skip-name-resolve", "--require-secure-transport=ON",
                f"--ssl-ca={directory / 'ca.pem'}", f"--ssl-cert={directory / 'server.crt'}",
                f"--ssl-key={directory / 'server.key'}", "--tls-version=TLSv1.2,TLSv1.3",
                f"--init-file={init_file}", "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci", "--max-connections=100",
                "--innodb-flush-log-at-trx-commit=2", "--skip-innodb-doublewrite",
                "--local-infile=0", f"--secure-file-priv={directory}",
            ]
            process = self._spawn(cmd, run_as, directory, directory / "mariadbd.out")
            handle = _MariaDBServer(port=port, admin_password=password, ca_file=ca_file,
                                    log_file=general_log, directory=directory, process=process,
                                    tls=True,
                                    extra_logs=(error_log, directory / "mariadbd.out"))
            if not self._ready(handle, partial(handle._wait_ready, deadline, error_log),
                               error_log, attempt):
                continue
            init_file.unlink(missing_ok=True)
            handle.startup_seconds = time.monotonic() - started
            return handle
        raise AssertionError("unreachable")

    def _start_pgbouncer(self, pg: _PostgresServer, pool_mode: str) -> ServerHandle:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        binary, version = find_pgbouncer()
        run_as = _run_as_for("postgres")
        ca_file, cert_pem, key_pem = self._tls_material()
        directory, _ = self._server_dir(f"pgbouncer-{pool_mode}", run_as)
        auth_user = f"sandbox_pgbouncer_{self._counter}"
        auth_password = secrets.token_urlsafe(24)
        self._prepare_auth_lookup(pg, auth_user, auth_password)

        _write(directory / "server.crt", cert_pem, run_as, 0o644)
        _write(directory / "server.key", key_pem, run_as, 0o600)
        _write(directory / "ca.pem", ca_file.read_bytes(), run_as, 0o644)
        # The auth_user's own password, in plaintext: PgBouncer needs it to log in to PostgreSQL
        # for the lookup. No other user is listed, so every other login goes to auth_query.
        _write(directory / "userlist.txt", f'"{auth_user}" "{auth_password}"\n', run_as)
        log_file = directory / "pgbouncer.log"

        for attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            settings = {
                "listen_addr": HOST,
                "listen_port": str(port),
                "unix_socket_dir": "",  # empty: no unix socket (none is needed)
                "auth_type": "scram-sha-256",
                "auth_file": str(directory / "userlist.txt"),
                "auth_user": auth_user,
                "auth_query": _PGBOUNCER_AUTH_QUERY,
                "pool_mode": pool_mode,
                "max_client_conn": "100",
                "default_pool_size": "10",
                "client_tls_sslmode": "require",
                "client_tls_cert_file": str(directory / "server.crt"),
                "client_tls_key_file": str(directory / "server.key"),
                "server_tls_sslmode": "verify-full",
                "server_tls_ca_file": str(directory / "ca.pem"),
                "log_connections": "1",
                "log_disconnections": "0",
                "log_pooler_errors": "1",
                "syslog": "0",
            }
            # Foreground, no `logfile`: PgBouncer then logs to stderr only, which is log_file.
            _write(directory / "pgbouncer.ini",
                   f"[databases]\n{DBNAME} = host={HOST} port={pg.port} dbname={DBNAME}\n\n"
                   "[pgbouncer]\n"
                   + "".join(f"{key} = {value}\n" for key, value in settings.items()), run_as)
            log_file.unlink(missing_ok=True)
            process = self._spawn([str(binary), str(directory / "pgbouncer.ini")], run_as,
                                  directory, log_file)
            handle = _PgBouncerServer(backend=pg, pool_mode=pool_mode, auth_user=auth_user,
                                      version=version, port=port, ca_file=ca_file,
                                      log_file=log_file, directory=directory, process=process,
                                      tls=True)
            if not self._ready(handle, partial(handle._wait_ready, deadline, auth_password),
                               log_file, attempt):
                continue
            handle.startup_seconds = time.monotonic() - started
            return handle
        raise AssertionError("unreachable")

    def _start_redis(self) -> ServerHandle:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        binary, version = find_redis_server()
        run_as = _run_as_for("redis")
        ca_file, cert_pem, key_pem = self._tls_material()
        directory, _ = self._server_dir("redis", run_as)
        password = secrets.token_urlsafe(24)
        _write(directory / "server.crt", cert_pem, run_as, 0o644)
        _write(directory / "server.key", key_pem, run_as, 0o600)
        _write(directory / "ca.pem", ca_file.read_bytes(), run_as, 0o644)
        output = directory / "redis-server.out"

        for attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            settings = [
                f"bind {HOST}",
                "port 0",  # no plaintext listener at all
                f"tls-port {port}",
                f"tls-cert-file {directory / 'server.crt'}",
                f"tls-key-file {directory / 'server.key'}",
                f"tls-ca-cert-file {directory / 'ca.pem'}",
                "tls-auth-clients no",
                'tls-protocols "TLSv1.2 TLSv1.3"',
                "daemonize no",
                "supervised no",
                'logfile ""',  # stdout: the output file
                "loglevel notice",
                f"dir {directory}",
                'save ""',
                "appendonly no",
                "maxclients 200",
                "slowlog-log-slower-than 0",
                "slowlog-max-len 100000",
                "acllog-max-len 10000",
                # ACL users: no one logs in as `default`; the admin's password as its SHA-256
                "user default off resetpass resetkeys resetchannels -@all",
                f"user {ADMIN_USER} on #{_redis_sha256(password)} ~* &* +@all",
            ]
            _write(directory / "redis.conf", "".join(f"{line}\n" for line in settings), run_as)
            output.unlink(missing_ok=True)
            process = self._spawn([str(binary), str(directory / "redis.conf")], run_as,
                                  directory, output)
            handle = _RedisServer(version=version, port=port, admin_password=password,
                                  ca_file=ca_file, log_file=directory / "monitor.log",
                                  directory=directory, process=process, tls=True,
                                  extra_logs=(output,))
            if not self._ready(handle, partial(handle._wait_ready, deadline, output),
                               output, attempt):
                continue
            handle.startup_seconds = time.monotonic() - started
            return handle
        raise AssertionError("unreachable")

    @staticmethod
    def _prepare_auth_lookup(pg: _PostgresServer, auth_user: str, auth_password: str) -> None:
        """The auth_user and the lookup function (in ``appdb``, where PgBouncer runs
        ``auth_query``: the database the client asked for)."""
        from psycopg import sql

        pg.create_login_user(auth_user, auth_password)
        with pg.admin_connect() as conn:
            conn.execute("CREATE SCHEMA IF NOT EXISTS pgbouncer")
            conn.execute("REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC")
            conn.execute(_PGBOUNCER_LOOKUP_FUNCTION)
            conn.execute("REVOKE ALL ON FUNCTION pgbouncer.user_lookup(text) FROM PUBLIC")
            for grant in ("GRANT USAGE ON SCHEMA pgbouncer TO {}",
                          "GRANT EXECUTE ON FUNCTION pgbouncer.user_lookup(text) TO {}"):
                conn.execute(sql.SQL(grant).format(sql.Identifier(auth_user)))
