"""Wire probes: what a database port says about itself to a client that sends no credential.

Each probe opens one connection, sends no credential, reads what the server says about itself,
and hangs up; no login is attempted, so no server counts a failed one. PostgreSQL waits for the
client: the probe sends SSLRequest, which every PostgreSQL server (and PgBouncer, RDS Proxy)
answers with one byte, S or N; after S it completes a TLS handshake (nothing verified, nothing
sent over it), after which the server closes without logging an error. MySQL speaks first: a
greeting packet (protocol 10, the version, the capability flags, which say whether it offers
TLS), or an error packet when it refuses the client outright. Hanging up after the greeting
counts as one aborted connect for this host, as for any client that gives up before logging in
(max_connect_errors); the login that follows, when it works, resets that count.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class WireAnswer:
    """What a database port said to a probe that sends no credential.

    ``outcome``: ``speaks`` (the engine's protocol), ``silent`` (nothing within the timeout),
    ``closed`` (hung up without a word), ``foreign`` (bytes of another protocol: ``seen`` shows
    them), ``refused`` (a MySQL error packet before any login: ``code`` and ``seen``)."""

    outcome: Literal["speaks", "silent", "closed", "foreign", "refused"]
    server: str = ""
    tls_offered: bool | None = None
    seen: str = ""
    code: int | None = None


_PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)
_MYSQL_CLIENT_SSL = 0x0800
_MYSQL_MAX_GREETING = 4096
#: adapter family -> the protocol a probe checks for, and its default port
PROTOCOL_NAMES: Mapping[str, str] = {"postgres": "PostgreSQL", "mysql": "MySQL"}
DEFAULT_PORTS: Mapping[str, int] = {"postgres": 5432, "mysql": 3306}


def _shown_bytes(data: bytes, limit: int = 40) -> str:
    """The first bytes a port sent, printable (others as '.'), cut at the first line end."""
    text = "".join(chr(b) if 32 <= b < 127 else "\n" if b in (10, 13) else "." for b in
                   data[:limit])
    return text.split("\n", 1)[0] or text.replace("\n", ".")


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    """Up to ``size`` bytes; fewer when the peer hangs up. TimeoutError past ``deadline``."""
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _mysql_greeting(data: bytes, *, partial: bool = False) -> WireAnswer | None:
    """A MySQL greeting or pre-login error packet (header included), or None. ``partial``:
    accept a packet cut short (to recognise a greeting among bytes read for another protocol)."""
    if len(data) < 5:
        return None
    length, sequence = int.from_bytes(data[:3], "little"), data[3]
    payload = data[4:4 + length]
    if sequence != 0 or not 0 < length <= _MYSQL_MAX_GREETING or (
            len(payload) < length and not partial):
        return None
    if payload[0] == 0xFF and length >= 3:  # ERR_Packet: errno, then the message
        code = int.from_bytes(payload[1:3], "little")
        message = payload[3:]
        if message[:1] == b"#":
            message = message[6:]
        return WireAnswer("refused", "MySQL", seen=message.decode("utf-8", "replace")[:200],
                          code=code)
    if payload[0] != 10 or b"\0" not in payload[1:]:
        return None
    version_bytes, _, rest = payload[1:].partition(b"\0")
    try:
        version = version_bytes.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not version[:1].isdigit() or not version.isprintable():
        return None
    if version.startswith("5.5.5-") and "mariadb" in version.lower():
        version = version[len("5.5.5-"):]
    flavour = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    number = re.match(r"[\d.]+", version)
    caps_at = 4 + 8 + 1  # thread id, first part of the scramble, filler
    tls = (bool(int.from_bytes(rest[caps_at:caps_at + 2], "little") & _MYSQL_CLIENT_SSL)
           if len(rest) >= caps_at + 2 else None)
    return WireAnswer("speaks", f"{flavour} {number.group(0) if number else version}",
                      tls_offered=tls)


def probe_postgres(host: str, port: int, timeout: float) -> WireAnswer:
    """Send SSLRequest; PostgreSQL answers S (TLS offered) or N (no TLS) and nothing more."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(_PG_SSL_REQUEST)
            answer = sock.recv(1024)
        except TimeoutError:
            return WireAnswer("silent")
        except (BrokenPipeError, ConnectionResetError):
            return WireAnswer("closed")
        if not answer:
            return WireAnswer("closed")
        if answer in (b"S", b"N"):
            if answer == b"S":
                _finish_tls_handshake(sock, host, deadline)
            return WireAnswer("speaks", "PostgreSQL", tls_offered=answer == b"S")
        if answer[:1] == b"E" and len(answer) > 5 and b"FATAL" in answer:
            return WireAnswer("speaks", "PostgreSQL")  # a server too old to know SSLRequest
        greeting = _mysql_greeting(answer, partial=True)
        if greeting is not None and greeting.outcome == "speaks":
            return WireAnswer("foreign", seen=f"with a {greeting.server} greeting")
        return WireAnswer("foreign", seen=repr(_shown_bytes(answer)))


def _finish_tls_handshake(sock: socket.socket, host: str, deadline: float) -> None:
    """Complete the handshake PostgreSQL expects after S, then close it cleanly."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nothing is sent over it: only a polite goodbye
    try:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.unwrap()
    except (OSError, ValueError):
        pass


def probe_mysql(host: str, port: int, timeout: float) -> WireAnswer:
    """Read the greeting MySQL sends first."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            head = _recv_exactly(sock, 4, deadline)
            if len(head) < 4:
                return WireAnswer("closed") if not head else \
                    WireAnswer("foreign", seen=repr(_shown_bytes(head)))
            length = int.from_bytes(head[:3], "little")
            body = (_recv_exactly(sock, length, deadline)
                    if head[3] == 0 and 0 < length <= _MYSQL_MAX_GREETING else b"")
        except TimeoutError:
            return WireAnswer("silent")
        except ConnectionResetError:
            return WireAnswer("closed")
        data = head + body
        if len(data) == 4:  # not a greeting's header: show what came, as far as it came
            with contextlib.suppress(OSError):
                sock.settimeout(0.2)
                data += sock.recv(64)
        return _mysql_greeting(data) or WireAnswer("foreign", seen=repr(_shown_bytes(data)))


WIRE_PROBES: Mapping[str, Callable[[str, int, float], WireAnswer]] = {
    "postgres": probe_postgres,
    "mysql": probe_mysql,
}
