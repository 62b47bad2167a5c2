"""MySQL, MariaDB and Aurora MySQL (PyMySQL; engines ``mysql``, ``mariadb``, ``aurora-mysql``).

TLS
    ``verify-full`` unless the secret says otherwise. The CA comes from ``ROTATION_CA_BUNDLE``
    (``AdapterOptions.ca_bundle``) or the system trust store. A verifying :class:`ssl.SSLContext`
    is always passed to PyMySQL: with no ``ssl`` options PyMySQL would negotiate TLS *without*
    verifying the certificate. ``verify-ca`` checks the chain but not the host name, ``require``
    encrypts without any check, ``disable`` (only when the secret opts out) sends no TLS at all.
    There is never a fallback from TLS to plaintext. ``VERIFY_X509_STRICT`` (on by default from
    Python 3.13) is cleared, as PyMySQL and OpenSSL-based clients do: the chain, the signature
    and the host name are still verified, but server certificates made by MySQL's own
    ``mysql_ssl_rsa_setup`` (no key-usage extensions) are accepted.

How a password is set, by the account's authentication plugin, which is kept (the README
copies this table; ``a`` is the account, ``'*HEX'`` and ``'<key>'`` hashes computed here):

| plugin                 | MySQL 5.7 / 8.x / 9.x, Aurora MySQL | MariaDB 10.x / 11.x | plaintext? |
| ---------------------- | ----------------------------------- | ------------------- | ---------- |
| mysql_native_password  | (1) ``... AS '*HEX'``               | (2)                 | no         |
| ed25519 (MariaDB)      | refused                             | (3)                 | no         |
| caching_sha2_password, | (4) ``... BY %s``                   | refused             | yes        |
| sha256_password        |                                     |                     |            |
| parsec (MariaDB 11.6+) | refused                             | (5)                 | yes        |
| any other plugin (6)   | refused: no password to rotate      | refused             | --         |

1. ``ALTER USER a IDENTIFIED WITH mysql_native_password AS '*HEX'`` (MySQL 5.7.5 and older:
   ``SET PASSWORD FOR a = '*HEX'``). MySQL lets an account without CREATE USER change itself
   only with ``IDENTIFIED BY``: when it refuses the hash (1227), its own password is sent as in
   (4) instead.
2. The account itself: ``SET PASSWORD FOR a = '*HEX'`` (needs no privilege, keeps a chain of
   plugins such as ``... OR unix_socket``). A master: ``ALTER USER a IDENTIFIED BY PASSWORD
   '*HEX'`` (needs CREATE USER; ``SET PASSWORD FOR`` another account would need UPDATE on the
   mysql schema; a chain of plugins is replaced by this one).
3. As (2), with ``SET PASSWORD FOR a = '<key>'`` (10.4+) and ``ALTER USER a IDENTIFIED VIA
   ed25519 USING '<key>'``.
4. ``ALTER USER a IDENTIFIED BY %s`` (keeps the plugin; the one form an account may use on
   itself without CREATE USER). These hashes are salted in a server-specific format, so the
   plaintext goes to the server, over the verified TLS connection; MySQL masks it in its general,
   slow and binary logs.
5. The account itself: ``SET PASSWORD FOR a = PASSWORD(%s)``; a master: ``ALTER USER a
   IDENTIFIED VIA parsec USING PASSWORD(%s)``. Salted on the server; MariaDB writes the
   statement verbatim to its general log.
6. Refused for "any other plugin": unix_socket, auth_socket, AWSAuthenticationPlugin (IAM),
   pam, gssapi, LDAP, Kerberos, mysql_no_login, mysql_old_password, ...

With dual passwords (MySQL 8.0.14+), MySQL statements end in ``RETAIN CURRENT PASSWORD``. A
clone whose plugin differs from its source's is switched with ``ALTER USER ... IDENTIFIED
{WITH|VIA} <plugin> {AS|USING|BY} ...``; a new clone is made with ``CREATE USER`` in the same
form (``CREATE USER a IDENTIFIED WITH mysql_native_password AS '*HEX'``, ``... IDENTIFIED BY
PASSWORD '*HEX'`` on MariaDB, ``... IDENTIFIED VIA ed25519 USING '<key>'``, ...).

``*HEX`` is ``*`` + upper-case hex of SHA1(SHA1(password)) (what ``PASSWORD()`` computes); the
ed25519 value is MariaDB's: base64 (no padding) of the Ed25519 public key whose secret scalar is
the clamped first half of SHA512(password). Passwords are encoded as UTF-8 everywhere (login and
hash), the same bytes the server hashes for ``PASSWORD()`` over a utf8mb4 connection.

Syntax is chosen from what the server says it is (:class:`ServerInfo`: ``VERSION()``,
``@@version_comment``, ``AURORA_VERSION()``), never from the engine name in the secret:

* MariaDB: ``'MariaDB'`` in the version (a ``5.5.5-`` prefix is dropped).
* Dual passwords (``RETAIN CURRENT PASSWORD`` / ``DISCARD OLD PASSWORD``): MySQL 8.0.14 and later
  (Aurora MySQL 3 included). MariaDB has none: use ``ROTATION_STRATEGY=alternating-users``.
* ``ALTER USER ... IDENTIFIED WITH ... AS``: MySQL 5.7.6 and later; older MySQL sets the hash with
  ``SET PASSWORD``. MySQL 8 reads a ``SET PASSWORD ... = '<literal>'`` as plaintext, so that form
  is never used there.
* MariaDB 10.4+: ``SET PASSWORD`` keeps an account's chain of plugins (``... OR unix_socket``).
* Aurora MySQL: ``AURORA_VERSION()`` is asked when the engine is ``aurora-mysql`` (or the version
  mentions Aurora); Aurora 2 counts as at least MySQL 5.7.12, Aurora 3 as at least 8.0.23.
* The account's plugin comes from ``mysql.user``; an account that may not read it (single user)
  reads its own ``SHOW CREATE USER``.

User name limits: MySQL (5.7.8 and later, Aurora MySQL) allows 32 characters, MariaDB 80, MySQL
5.7.7 and older 16. Before connecting only the secret's ``engine`` is known, so a secret's user
may be as long as its engine allows (:meth:`MySQLAdapter.username_limit`: 80 for ``mariadb``, 32
for ``mysql`` and ``aurora-mysql``): a MariaDB server behind ``"engine": "mysql"`` (common) gets
MySQL's limit, and the error says to set the engine to ``mariadb``. Clone names (alternating
users) always fit 32, whatever the engine, so existing pairs keep their names: ``user +
"_clone"`` when that fits; otherwise the first 19 characters, ``_``, 6 hex digits of
SHA-256(user) and ``_clone``: 32 characters, stable, and distinct for long names sharing a
prefix. An original of up to 80 characters on MariaDB thus alternates with a 32-character clone.

Account names are written as backtick-quoted identifiers (a backtick doubled), which means the
same under every ``sql_mode`` (``NO_BACKSLASH_ESCAPES``, ``ANSI_QUOTES``); secret values travel
as query arguments, escaped by PyMySQL for the session's ``sql_mode``. When a statement has
arguments, ``%`` in the account is written ``%%`` (PyMySQL interpolates with ``%``).

Errors: messages name the host, port and user, never a password or hash. Driver exceptions are
not chained (``__cause__`` and ``__context__`` stay empty): a server's message can quote the
statement (a syntax error quotes the text near the password), so the driver's text is only
included, scrubbed, for statements that carry no secret, and the error keeps the driver's class
name (``driver_error``) and the MySQL error number (``sqlstate``).

A refused login is a :class:`~rotation.errors.PasswordRefusedError` (the one refusal that makes
setSecret try other versions' passwords) only when the server said the password or user is
wrong: 1045, and on MariaDB 1698 (its answer to a wrong password when the account's plugin chain
ends in ``unix_socket``). Not when the secret disables TLS and the server offers it: MariaDB
before 11.4 under ``require_secure_transport``, and any account with ``REQUIRE SSL``, answer 1045
to the right password too (the server's greeting, read before the refusal, tells whether it
offers TLS). A locked or blocked account (3118, 4151, 4150, 3955), an expired password, a host
not allowed and exhausted connection limits are plain LoginError / ConnectError with their fix.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, ClassVar, Literal

import pymysql
import pymysql.connections
import pymysql.converters
from pymysql.constants import CLIENT

from rotation import _redact
from rotation.adapters.base import AdapterOptions
from rotation.credentials import DbCredentials, SslMode
from rotation.errors import (
    ConfigError,
    ConnectError,
    DatabaseError,
    DbTimeoutError,
    LoginError,
    PasswordRefusedError,
    PrivilegeError,
    SecretFormatError,
    TlsError,
)

log = logging.getLogger(__name__)

CLONE_SUFFIX = "_clone"
#: MySQL's limit on a user name, in characters (5.7.8 and later). Clone names are always made to
#: fit it, whatever the engine: the server is not known when createSecret names the clone, and
#: existing alternating pairs must keep their names.
MAX_USERNAME_LENGTH = 32
#: MariaDB's limit (10.0 and later)
MARIADB_MAX_USERNAME_LENGTH = 80
#: MySQL 5.7.7 and older, MariaDB 5.5
OLD_MAX_USERNAME_LENGTH = 16
#: the limit each engine name stands for, before the server is known (a plug-in engine name
#: mapped to this adapter gets MySQL's)
ENGINE_USERNAME_LIMITS: dict[str, int] = {"mysql": MAX_USERNAME_LENGTH,
                                          "aurora-mysql": MAX_USERNAME_LENGTH,
                                          "mariadb": MARIADB_MAX_USERNAME_LENGTH}
_CLONE_DIGEST_CHARS = 6

NATIVE = "mysql_native_password"
CACHING_SHA2 = "caching_sha2_password"
SHA256 = "sha256_password"
ED25519 = "ed25519"
PARSEC = "parsec"

#: plugins whose password is set from a hash computed here (the plaintext never leaves the client)
CLIENT_HASHED_PLUGINS: dict[str, frozenset[str]] = {
    "mysql": frozenset({NATIVE}),
    "mariadb": frozenset({NATIVE, ED25519}),
}
#: plugins whose salted, server-specific storage format makes a client-side hash impractical:
#: the plaintext is sent, over the (verified) TLS connection
PLAINTEXT_PLUGINS: dict[str, frozenset[str]] = {
    "mysql": frozenset({CACHING_SHA2, SHA256}),
    "mariadb": frozenset({PARSEC}),
}

TLS_HINT = ("set ROTATION_CA_BUNDLE to the CA that signed the server certificate (for RDS, the "
            "region's global bundle), or set sslmode in the secret")
NETWORK_HINT = ("check that the function's VPC subnets and security groups can reach the "
                "database port, and that `host` and `port` in the secret are right")
MASTER_PRIVILEGE_HINT = ("the master user needs CREATE USER, SELECT on mysql.*, and every "
                         "privilege it copies WITH GRANT OPTION (ADMIN OPTION for roles); on "
                         "MariaDB, copying a default role (SET DEFAULT ROLE ... FOR) also needs "
                         "UPDATE on mysql.*")


# --------------------------------------------------------------------------------------------
# Names and quoting
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Account:
    """A MySQL account: ``'user'@'host'``."""

    user: str
    host: str

    def __str__(self) -> str:
        return f"{self.user!r}@{self.host!r}"


def check_username(username: str, *, what: str = "username") -> None:
    """Refuse names no server accepts, before they reach SQL: empty, NUL, not UTF-8 encodable."""
    if not isinstance(username, str) or username == "":
        raise SecretFormatError(f"the {what} is empty", key="username",
                                hint="set `username` to the database user's name")
    if "\x00" in username:
        raise SecretFormatError(f"the {what} contains a NUL character", key="username",
                                hint="remove the NUL from `username`")
    try:
        username.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretFormatError(f"the {what} is not valid Unicode text", key="username",
                                hint="store `username` as plain UTF-8 text") from None


def quote_identifier(name: str) -> str:
    """``name`` as a backtick-quoted identifier (same meaning under every sql_mode)."""
    if "\x00" in name:
        raise SecretFormatError("an account name contains a NUL character", key="username",
                                hint="remove the NUL from `username`")
    return "`" + name.replace("`", "``") + "`"


def account_sql(account: Account) -> str:
    """The account as SQL: `` `user`@`host` `` (no ``%`` doubling: see :class:`Statement`)."""
    return quote_identifier(account.user) + "@" + quote_identifier(account.host)


def quote_string(value: str, *, no_backslash_escapes: bool = False) -> str:
    """A string literal as PyMySQL writes a query argument (used to render statements)."""
    if no_backslash_escapes:
        return "'" + value.replace("'", "''") + "'"
    return "'" + str(pymysql.converters.escape_string(value)) + "'"


def clone_username(username: str, limit: int = MAX_USERNAME_LENGTH) -> str:
    """AWS's alternate-user name: ``username + "_clone"``, kept within ``limit`` characters.

    Rule: when ``username + "_clone"`` fits, that is the name. Otherwise the name is the first
    ``limit - 13`` characters of ``username``, ``_``, the first 6 hex digits of
    SHA-256(``username``) and ``_clone``: exactly ``limit`` characters, deterministic, and
    different for two long names that share a prefix.
    """
    name = username + CLONE_SUFFIX
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
    keep = limit - len(CLONE_SUFFIX) - 1 - _CLONE_DIGEST_CHARS
    if keep < 1:
        raise ValueError(f"a user name limit of {limit} leaves no room for a clone name")
    return f"{username[:keep]}_{digest[:_CLONE_DIGEST_CHARS]}{CLONE_SUFFIX}"


# --------------------------------------------------------------------------------------------
# Client-side password hashes
# --------------------------------------------------------------------------------------------

def native_password_hash(password: str) -> str:
    """``mysql_native_password``'s stored form: ``*`` + HEX(SHA1(SHA1(password)))."""
    inner = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324 - the plugin's format
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


_ED_P = 2**255 - 19
_ED_D = (-121665 * pow(121666, _ED_P - 2, _ED_P)) % _ED_P
_ED_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_ED_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_EdPoint = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)


def _ed_add(p: _EdPoint, q: _EdPoint) -> _EdPoint:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _ED_P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _ED_P
    c = 2 * p[3] * q[3] * _ED_D % _ED_P
    d = 2 * p[2] * q[2] % _ED_P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _ED_P, g * h % _ED_P, f * g % _ED_P, e * h % _ED_P)


def ed25519_password_hash(password: str) -> str:
    """MariaDB ``ed25519`` plugin's stored form (what its ``PASSWORD()`` computes).

    The password (any length) takes the place of RFC 8032's 32-byte seed: the secret scalar is
    the clamped first half of SHA512(password), the stored value the base64 of the encoded public
    key without padding (43 characters). Pure Python: Lambda layers carry no libsodium.
    """
    digest = hashlib.sha512(password.encode("utf-8")).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    result: _EdPoint = (0, 1, 1, 0)
    addend: _EdPoint = (_ED_BX, _ED_BY, 1, _ED_BX * _ED_BY % _ED_P)
    while scalar:
        if scalar & 1:
            result = _ed_add(result, addend)
        addend = _ed_add(addend, addend)
        scalar >>= 1
    z_inv = pow(result[2], _ED_P - 2, _ED_P)
    x = result[0] * z_inv % _ED_P
    y = result[1] * z_inv % _ED_P
    encoded = (y | ((x & 1) << 255)).to_bytes(32, "little")
    return base64.b64encode(encoded).decode("ascii").rstrip("=")


# --------------------------------------------------------------------------------------------
# What the server is
# --------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class ServerInfo:
    """The server's flavour and version, from ``VERSION()`` and friends."""

    flavour: Literal["mysql", "mariadb"]
    version: tuple[int, int, int]
    version_string: str = ""
    aurora_version: str | None = None

    @classmethod
    def parse(cls, version: str, version_comment: str = "",
              aurora_version: str | None = None) -> ServerInfo:
        text = version.strip()
        is_mariadb = "mariadb" in text.lower() or "mariadb" in version_comment.lower()
        if is_mariadb and text.startswith("5.5.5-"):
            text = text[len("5.5.5-"):]  # MariaDB 10's compatibility prefix
        if aurora_version is None and "mysql_aurora." in text:
            aurora_version = text.split("mysql_aurora.", 1)[1].strip() or None
        match = _VERSION_RE.match(text)
        numbers = (0, 0, 0)
        if match:
            numbers = (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
        if aurora_version is not None and not is_mariadb:
            # Aurora MySQL 2 is MySQL 5.7.12-compatible, 3 is 8.0.23+: at least that much.
            aurora = _VERSION_RE.match(aurora_version)
            major = int(aurora.group(1)) if aurora else 0
            floor = {2: (5, 7, 12), 3: (8, 0, 23)}.get(major, (0, 0, 0))
            numbers = max(numbers, floor)
        return cls("mariadb" if is_mariadb else "mysql", numbers, version, aurora_version)

    @property
    def is_mariadb(self) -> bool:
        return self.flavour == "mariadb"

    @property
    def is_aurora(self) -> bool:
        return self.aurora_version is not None

    @property
    def supports_dual_passwords(self) -> bool:
        """``RETAIN CURRENT PASSWORD`` / ``DISCARD OLD PASSWORD``: MySQL 8.0.14+ only."""
        return not self.is_mariadb and self.version >= (8, 0, 14)

    @property
    def has_alter_user_as(self) -> bool:
        """``ALTER USER ... IDENTIFIED WITH plugin AS 'hash'``: MySQL 5.7.6+."""
        return not self.is_mariadb and self.version >= (5, 7, 6)

    @property
    def mariadb_set_password_any_plugin(self) -> bool:
        """MariaDB 10.4+: SET PASSWORD works for every password plugin and keeps the chain."""
        return self.is_mariadb and self.version >= (10, 4, 0)

    @property
    def has_default_roles_table(self) -> bool:
        """MySQL 8.0+ keeps default roles in ``mysql.default_roles`` (not in SHOW GRANTS)."""
        return not self.is_mariadb and self.version >= (8, 0, 0)

    @property
    def has_alter_user_options(self) -> bool:
        """``ALTER USER ... REQUIRE ... WITH MAX_...``: MariaDB 10.2+ and MySQL 5.7.6+. On
        MariaDB it needs only CREATE USER, where GRANT with the same clauses needs UPDATE on
        the mysql schema."""
        return self.is_mariadb or self.has_alter_user_as

    @property
    def max_username_length(self) -> int:
        """The longest user name this server accepts, in characters (an unreadable version
        counts as a current one)."""
        if self.version == (0, 0, 0):
            return MARIADB_MAX_USERNAME_LENGTH if self.is_mariadb else MAX_USERNAME_LENGTH
        if self.is_mariadb:
            return MARIADB_MAX_USERNAME_LENGTH if self.version >= (10, 0, 0) else \
                OLD_MAX_USERNAME_LENGTH
        return MAX_USERNAME_LENGTH if self.version >= (5, 7, 8) else OLD_MAX_USERNAME_LENGTH

    def describe(self) -> str:
        numbers = ".".join(str(n) for n in self.version)
        if self.is_mariadb:
            return f"MariaDB {numbers}"
        if self.is_aurora:
            return f"Aurora MySQL {self.aurora_version} (MySQL {numbers})"
        return f"MySQL {numbers}"


def normalize_plugin(plugin: str | None) -> str:
    """The plugin name as compared here ('' and NULL mean mysql_native_password)."""
    name = (plugin or "").strip().strip("'`\"")
    return name or NATIVE


def check_dual_password_support(server: ServerInfo) -> None:
    """Raise ConfigError when dual passwords are asked for on a server without them."""
    if server.supports_dual_passwords:
        return
    if server.is_mariadb:
        raise ConfigError(
            f"dual passwords are enabled, but the server is {server.describe()}, and MariaDB "
            "has no dual passwords",
            hint="use ROTATION_STRATEGY=alternating-users, and turn dual passwords off")
    raise ConfigError(
        f"dual passwords are enabled, but the server is {server.describe()}; they need "
        "MySQL 8.0.14 or later",
        hint="upgrade the server, or use ROTATION_STRATEGY=alternating-users")


def _check_plugin(server: ServerInfo, account: Account, plugin: str) -> None:
    supported = CLIENT_HASHED_PLUGINS[server.flavour] | PLAINTEXT_PLUGINS[server.flavour]
    if plugin not in supported:
        raise DatabaseError(
            f"account {account} authenticates with the {plugin!r} plugin on "
            f"{server.describe()}, which has no password this function can rotate",
            hint="rotate only password accounts (" + ", ".join(sorted(supported)) + "); "
                 "IAM, socket, PAM and LDAP accounts are managed outside the database")


# --------------------------------------------------------------------------------------------
# Statements (pure)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One SQL statement: ``sql`` with ``%s`` placeholders for ``args`` (secret values travel as
    arguments, escaped by the driver). ``action`` says what it does, without any secret; ``repr``
    never shows the arguments."""

    sql: str
    args: tuple[str, ...] = field(default=(), repr=False)
    action: str = ""
    carries_secret: bool = False

    @classmethod
    def build(cls, template: str, accounts: Sequence[Account] = (), args: Sequence[str] = (),
              *, action: str, carries_secret: bool = False) -> Statement:
        """``template`` with ``{0}``, ``{1}``... replaced by quoted accounts (``%`` doubled when
        there are arguments) and ``%s`` left for ``args``."""
        def quoted(match: re.Match[str]) -> str:
            text = account_sql(accounts[int(match.group(1))])
            return text.replace("%", "%%") if args else text

        sql = re.sub(r"\{(\d+)\}", quoted, template)  # one pass: names may contain "{1}"
        return cls(sql, tuple(args), action, carries_secret)

    def render(self, *, no_backslash_escapes: bool = False) -> str:
        """The exact text PyMySQL would send (for tests and for reading; shows the arguments)."""
        if not self.args:
            return self.sql
        return self.sql % tuple(
            quote_string(arg, no_backslash_escapes=no_backslash_escapes) for arg in self.args)


def build_set_password(server: ServerInfo, account: Account, plugin: str | None, password: str,
                       *, current_plugin: str | None = None, retain_current: bool = False,
                       own: bool = False, hashed: bool = True) -> Statement:
    """The statement giving ``account`` ``password`` under ``plugin``.

    ``current_plugin`` (default: ``plugin``) is the account's plugin now; when it differs, the
    statement switches the plugin too. ``retain_current`` keeps the old password as a secondary
    one (MySQL 8.0.14+; ConfigError elsewhere). ``own`` says the logged-in account changes
    itself: MariaDB then uses ``SET PASSWORD`` (allowed to any account for itself, and it keeps
    a chain of plugins), while a master uses ``ALTER USER`` (which needs CREATE USER, where
    ``SET PASSWORD FOR`` another account needs UPDATE on the mysql schema). ``hashed=False``
    gives MySQL's ``IDENTIFIED BY`` plaintext form for mysql_native_password: the only form a
    MySQL account without CREATE USER may use on itself.
    """
    if password == "":
        raise SecretFormatError("refusing to set an empty password", key="password",
                                hint="rotate to a generated, non-empty password")
    plugin = normalize_plugin(plugin)
    current = normalize_plugin(current_plugin) if current_plugin is not None else plugin
    _check_plugin(server, account, plugin)
    if retain_current:
        check_dual_password_support(server)
    action = f"set the password of {account}"

    def make(template: str, secret: str) -> Statement:
        return Statement.build(template, [account], [secret], action=action,
                               carries_secret=True)

    if server.is_mariadb:
        use_set = (own and current == plugin
                   and (plugin == NATIVE or server.mariadb_set_password_any_plugin))
        if plugin == NATIVE:
            secret = native_password_hash(password)
            if use_set:
                return make("SET PASSWORD FOR {0} = %s", secret)
            return make("ALTER USER {0} IDENTIFIED BY PASSWORD %s", secret)
        if plugin == ED25519:
            secret = ed25519_password_hash(password)
            if use_set:
                return make("SET PASSWORD FOR {0} = %s", secret)
            return make("ALTER USER {0} IDENTIFIED VIA ed25519 USING %s", secret)
        # parsec: salted on the server; plaintext over TLS
        if use_set:
            return make("SET PASSWORD FOR {0} = PASSWORD(%s)", password)
        return make(f"ALTER USER {{0}} IDENTIFIED VIA {plugin} USING PASSWORD(%s)", password)
    retain = " RETAIN CURRENT PASSWORD" if retain_current else ""
    if plugin == NATIVE and hashed:
        secret = native_password_hash(password)
        if server.has_alter_user_as:
            return make("ALTER USER {0} IDENTIFIED WITH mysql_native_password AS %s" + retain,
                        secret)
        return make("SET PASSWORD FOR {0} = %s", secret)  # MySQL 5.7.5 and older
    # caching_sha2_password / sha256_password (salted, server-side format), or a native account
    # that may only change itself with IDENTIFIED BY: plaintext over TLS
    if not server.has_alter_user_as:
        return make("SET PASSWORD FOR {0} = PASSWORD(%s)", password)
    if current == plugin:  # IDENTIFIED BY keeps the account's plugin
        return make("ALTER USER {0} IDENTIFIED BY %s" + retain, password)
    return make(f"ALTER USER {{0}} IDENTIFIED WITH {plugin} BY %s" + retain, password)


def build_create_user(server: ServerInfo, account: Account, plugin: str | None,
                      password: str) -> Statement:
    """``CREATE USER`` for ``account`` with ``plugin`` and ``password`` (hashed where possible)."""
    if password == "":
        raise SecretFormatError("refusing to set an empty password", key="password",
                                hint="rotate to a generated, non-empty password")
    plugin = normalize_plugin(plugin)
    _check_plugin(server, account, plugin)
    action = f"create the user {account}"
    if server.is_mariadb:
        if plugin == NATIVE:
            return Statement.build("CREATE USER {0} IDENTIFIED BY PASSWORD %s", [account],
                                   [native_password_hash(password)], action=action,
                                   carries_secret=True)
        if plugin == ED25519:
            return Statement.build("CREATE USER {0} IDENTIFIED VIA ed25519 USING %s", [account],
                                   [ed25519_password_hash(password)], action=action,
                                   carries_secret=True)
        return Statement.build(f"CREATE USER {{0}} IDENTIFIED VIA {plugin} USING PASSWORD(%s)",
                               [account], [password], action=action, carries_secret=True)
    if plugin == NATIVE:
        if server.has_alter_user_as:
            return Statement.build("CREATE USER {0} IDENTIFIED WITH mysql_native_password AS %s",
                                   [account], [native_password_hash(password)], action=action,
                                   carries_secret=True)
        return Statement.build("CREATE USER {0} IDENTIFIED BY PASSWORD %s", [account],
                               [native_password_hash(password)], action=action,
                               carries_secret=True)
    return Statement.build(f"CREATE USER {{0}} IDENTIFIED WITH {plugin} BY %s", [account],
                           [password], action=action, carries_secret=True)


def build_discard_old_password(server: ServerInfo, account: Account) -> Statement:
    """``ALTER USER ... DISCARD OLD PASSWORD`` (MySQL 8.0.14+; ConfigError elsewhere)."""
    check_dual_password_support(server)
    return Statement.build("ALTER USER {0} DISCARD OLD PASSWORD", [account],
                           action=f"discard the old password of {account}")


def build_show_grants(account: Account) -> Statement:
    return Statement.build("SHOW GRANTS FOR {0}", [account],
                           action=f"read the grants of {account}")


def build_show_create_user(account: Account) -> Statement:
    return Statement.build("SHOW CREATE USER {0}", [account],
                           action=f"read the definition of {account}")


def build_accounts_query(server: ServerInfo, username: str) -> Statement:
    """Every account (host) named ``username``, with its plugin and stored hash."""
    sql = ("SELECT Host, plugin, authentication_string FROM mysql.user WHERE User = %s"
           " AND is_role = 'N' ORDER BY Host" if server.is_mariadb else
           "SELECT Host, plugin, authentication_string FROM mysql.user WHERE User = %s"
           " ORDER BY Host")
    return Statement(sql, (username,), action=f"look up the accounts of user {username!r}")


def build_account_query(account: Account) -> Statement:
    return Statement(
        "SELECT Host, plugin, authentication_string FROM mysql.user WHERE User = %s AND Host = %s",
        (account.user, account.host), action=f"look up the account {account}")


def build_default_roles_query(account: Account) -> Statement:
    return Statement(
        "SELECT DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST FROM mysql.default_roles "
        "WHERE USER = %s AND HOST = %s ORDER BY DEFAULT_ROLE_USER, DEFAULT_ROLE_HOST",
        (account.user, account.host), action=f"read the default roles of {account}")


def build_set_default_roles(account: Account, roles: Sequence[Account]) -> Statement:
    """MySQL 8: ``SET DEFAULT ROLE {NONE | r1, r2} TO account``."""
    names = ", ".join(account_sql(role) for role in roles) if roles else "NONE"
    return Statement(f"SET DEFAULT ROLE {names} TO {account_sql(account)}",
                     action=f"set the default roles of {account}")


# --------------------------------------------------------------------------------------------
# SHOW GRANTS / SHOW CREATE USER parsing (pure)
# --------------------------------------------------------------------------------------------

class GrantParseError(DatabaseError):
    """A SHOW GRANTS / SHOW CREATE USER line this adapter does not understand."""


_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
      | (?P<ident>`(?:[^`]|``)*`)
      | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
      | (?P<word>[A-Za-z0-9_$.*]+)
      | (?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)
_BACKSLASH_ESCAPES = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


@dataclass(frozen=True)
class Token:
    kind: Literal["ws", "ident", "string", "word", "punct"]
    text: str
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words

    @property
    def value(self) -> str:
        """The token's meaning: quotes removed and escapes resolved."""
        if self.kind == "ident":
            return self.text[1:-1].replace("``", "`")
        if self.kind == "string":
            return _unquote_string(self.text)
        return self.text


def _unquote_string(text: str) -> str:
    quote, body = text[0], text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_BACKSLASH_ESCAPES.get(nxt, nxt))
            i += 2
        elif char == quote and i + 1 < len(body) and body[i + 1] == quote:
            out.append(quote)
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """Split SQL text into tokens; a quoted name or string is one token whatever it contains."""
    tokens: list[Token] = []
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        token = Token(kind, match.group(), match.start(), match.end())  # type: ignore[arg-type]
        if token.kind == "punct" and token.text in "`'\"":
            raise GrantParseError(f"unterminated quote in {_shorten(text)!r}",
                                  hint="report this SHOW GRANTS line as a bug")
        tokens.append(token)
    return tokens


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _solid(tokens: Iterable[Token]) -> list[Token]:
    return [t for t in tokens if t.kind != "ws"]


_NAME_KINDS = ("ident", "string", "word")


def _account_at(tokens: list[Token], index: int) -> tuple[Account, int] | None:
    """The ``user@host`` account starting at solid token ``index``, and the index after it."""
    if index + 2 < len(tokens) and tokens[index].kind in _NAME_KINDS \
            and tokens[index + 1].kind == "punct" and tokens[index + 1].text == "@" \
            and tokens[index + 2].kind in _NAME_KINDS:
        return Account(tokens[index].value, tokens[index + 2].value), index + 3
    return None


@dataclass(frozen=True)
class GrantLine:
    """One line of SHOW GRANTS, split around its grantee.

    ``kind`` is ``grant`` (``GRANT ... TO a``), ``revoke`` (MySQL 8 partial revokes,
    ``REVOKE ... FROM a``) or ``default-role`` (MariaDB ``SET DEFAULT ROLE r FOR a``).
    ``head`` is the text before the grantee (verbatim), ``tail`` what follows it with any
    ``IDENTIFIED ...`` clause removed (MariaDB and MySQL 5.6 print the password hash there).
    """

    kind: Literal["grant", "revoke", "default-role"]
    head: str
    grantee: Account
    tail: str
    body: str  # between the leading keyword and ON/TO: privileges, or the roles granted
    on_object: bool  # a privilege grant (``... ON object``) rather than a role grant
    proxy: bool

    def to(self, account: Account) -> str:
        """This line, granted to ``account`` instead, without any IDENTIFIED clause."""
        text = f"{self.head} {account_sql(account)}"
        return f"{text} {self.tail}" if self.tail else text

    def roles(self) -> list[str]:
        """The roles a role grant or default-role line names (``r`` or ``r@h`` values)."""
        names: list[str] = []
        for token in _solid(tokenize(self.body)):
            if token.kind == "punct" and token.text == "@" and names:
                names[-1] += "@"
            elif token.kind in _NAME_KINDS:
                if names and names[-1].endswith("@"):
                    names[-1] += token.value
                else:
                    names.append(token.value)
        return names

    def undo(self) -> str | None:
        """The statement taking this line's grant away again, when ``REVOKE ALL PRIVILEGES,
        GRANT OPTION`` does not: role grants, PROXY grants and default roles."""
        target = account_sql(self.grantee)
        if self.kind == "default-role":
            return f"SET DEFAULT ROLE NONE FOR {target}"
        if self.kind != "grant":
            return None
        if self.proxy:
            return f"REVOKE {self.body} FROM {target}"
        if not self.on_object:
            return f"REVOKE {self.body} FROM {target}"
        return None


def parse_grant(line: str) -> GrantLine:
    """Split one SHOW GRANTS line around its grantee (see :class:`GrantLine`)."""
    tokens = _solid(tokenize(line))
    if not tokens or tokens[0].kind != "word":
        raise GrantParseError(f"cannot read the grant {_shorten(line)!r}",
                              hint="report this SHOW GRANTS line as a bug")
    first = tokens[0].text.upper()
    kind: Literal["grant", "revoke", "default-role"]
    if first == "GRANT":
        kind, keyword = "grant", "TO"
    elif first == "REVOKE":
        kind, keyword = "revoke", "FROM"
    elif first == "SET" and len(tokens) > 2 and tokens[1].is_word("DEFAULT") \
            and tokens[2].is_word("ROLE"):
        kind, keyword = "default-role", "FOR"
    else:
        raise GrantParseError(f"unexpected SHOW GRANTS line {_shorten(line)!r}",
                              hint="report this SHOW GRANTS line as a bug")
    position = next((i for i, t in enumerate(tokens) if t.is_word(keyword)), None)
    found = _account_at(tokens, position + 1) if position is not None else None
    if position is None or found is None:
        raise GrantParseError(f"no grantee found in {_shorten(line)!r}",
                              hint="report this SHOW GRANTS line as a bug")
    grantee, after = found
    on_index = next((i for i, t in enumerate(tokens[:position]) if t.is_word("ON")), None)
    body_end = tokens[on_index].start if on_index is not None else tokens[position].start
    body = line[tokens[0].end:body_end].strip()
    proxy = kind == "grant" and on_index is not None and body.upper() == "PROXY"
    if proxy:
        body = line[tokens[0].end:tokens[position].start].strip()  # "PROXY ON ''@''"
    if kind == "default-role":
        body = line[tokens[2].end:tokens[position].start].strip()  # the role(s)
    rest = tokens[after:]
    if rest and rest[0].is_word("IDENTIFIED"):
        cut = 1
        if len(rest) > 1 and rest[1].is_word("WITH", "VIA", "BY"):
            cut = 2
        while cut < len(rest) and not rest[cut].is_word("REQUIRE", "WITH"):
            cut += 1
        rest = rest[cut:]
    head = line[:tokens[position].end]
    tail = " ".join(t.text for t in rest)
    return GrantLine(kind, head, grantee, tail, body, on_index is not None, proxy)


def rewrite_grants(lines: Iterable[str], source: Account, target: Account) -> list[str]:
    """``source``'s SHOW GRANTS lines, granted to ``target``: GRANT lines first, then partial
    REVOKEs, then default roles. Refuses a line whose grantee is not ``source``."""
    order = {"grant": 0, "revoke": 1, "default-role": 2}
    parsed: list[GrantLine] = []
    for line in lines:
        grant = parse_grant(line)
        if grant.grantee.user != source.user or grant.grantee.host.lower() != source.host.lower():
            raise GrantParseError(
                f"SHOW GRANTS FOR {source} returned a grant for {grant.grantee}",
                hint="report this SHOW GRANTS output as a bug")
        parsed.append(grant)
    # MariaDB keeps a default role after the role itself is revoked; replaying it would fail
    # ("has not been granted role"), so a default role is kept only while it is granted.
    granted = {role for g in parsed if g.kind == "grant" and not g.on_object
               for role in g.roles()}
    parsed = [g for g in parsed if g.kind != "default-role" or set(g.roles()) <= granted]
    parsed.sort(key=lambda g: order[g.kind])  # stable: keeps the server's order within a kind
    return [g.to(target) for g in parsed]


def _is_default_role(line: str) -> bool:
    return parse_grant(line).kind == "default-role"


def plan_grant_additions(desired: Sequence[str], current: Sequence[str],
                         target: Account) -> list[Statement]:
    """The first half of a grant sync, which takes nothing away: each ``desired`` line
    ``target`` does not show yet (grants, then MySQL 8 partial revokes, then MariaDB's default
    role), in :func:`rewrite_grants`'s order. A privilege the master may not grant fails here,
    before :func:`plan_grant_sync` revokes anything, and every line this runs is known to be
    grantable when that one replays it."""
    have = set(current)
    return [Statement(line, action=f"copy {_what(line)!r} to {target}")
            for line in desired if line not in have]


def _what(line: str) -> str:
    """What a grant line grants, for messages: the text before its grantee, without TO."""
    head = parse_grant(line).head
    return _shorten(head[:head.rfind(" ")] if " " in head else head, 100)


def plan_grant_sync(desired: Sequence[str], current: Sequence[str],
                    target: Account) -> list[Statement]:
    """Statements that give ``target`` exactly the ``desired`` grants, given its ``current``
    ones (both as :func:`rewrite_grants` writes them). Nothing when they already match;
    otherwise undo the role / proxy / default-role lines that are no longer wanted (REVOKE ALL
    does not reach them on MySQL; on MariaDB it does, so they go first), REVOKE ALL PRIVILEGES,
    GRANT OPTION, and replay every desired line.

    MariaDB keeps an account's default role through REVOKE ALL, so a default role already in
    place is not set again: SET DEFAULT ROLE ... FOR another account needs UPDATE on the mysql
    schema, and failing on it after REVOKE ALL would fail the sync for nothing."""
    if sorted(desired) == sorted(current):
        return []
    plan: list[Statement] = []
    wanted = set(desired)
    for line in current:
        if line in wanted:
            continue
        undo = parse_grant(line).undo()
        if undo is not None:
            plan.append(Statement(undo, action=f"remove a grant from {target}"))
    plan.append(Statement(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account_sql(target)}",
                          action=f"revoke the privileges of {target}"))
    have = set(current)
    plan.extend(Statement(line, action=f"copy privileges to {target}") for line in desired
                if not (line in have and _is_default_role(line)))
    return plan


# --------------------------------------------------------------------------------------------
# Account options: REQUIRE and resource limits (pure)
# --------------------------------------------------------------------------------------------

#: resource limits as SHOW GRANTS prints them (MAX_STATEMENT_TIME is MariaDB's)
RESOURCE_LIMITS = ("MAX_QUERIES_PER_HOUR", "MAX_UPDATES_PER_HOUR", "MAX_CONNECTIONS_PER_HOUR",
                   "MAX_USER_CONNECTIONS", "MAX_STATEMENT_TIME")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class AccountOptions:
    """An account's TLS requirement and resource limits, as MariaDB (and MySQL 5.7.5 and older)
    print them on its global SHOW GRANTS line. ``require``: ``("SSL", "")``, ``("X509", "")``
    or ``("ISSUER" | "SUBJECT" | "CIPHER", value)`` items; ``limits``: the non-zero
    ``(name, number)`` pairs, sorted."""

    require: tuple[tuple[str, str], ...] = ()
    limits: tuple[tuple[str, str], ...] = ()


def _split_tail(tail: str) -> tuple[str, list[tuple[str, str]], dict[str, str]] | None:
    """A grant line's tail without its REQUIRE and resource-limit clauses, and those clauses;
    None when it has none, or holds something this does not know (the line is kept whole)."""
    tokens = _solid(tokenize(tail))
    kept: list[str] = []
    require: list[tuple[str, str]] = []
    limits: dict[str, str] = {}
    found = False
    i = 0
    while i < len(tokens):
        if tokens[i].is_word("REQUIRE"):
            found, i = True, i + 1
            while i < len(tokens) and not tokens[i].is_word("WITH"):
                word = tokens[i]
                if word.is_word("SSL", "X509"):
                    require.append((word.text.upper(), ""))
                    i += 1
                elif word.is_word("NONE", "AND"):
                    i += 1
                elif word.is_word("ISSUER", "SUBJECT", "CIPHER") and i + 1 < len(tokens) \
                        and tokens[i + 1].kind == "string":
                    require.append((word.text.upper(), tokens[i + 1].value))
                    i += 2
                else:
                    return None
        elif tokens[i].is_word("WITH"):
            i += 1
            while i < len(tokens):
                word, rest = tokens[i], tokens[i + 1:i + 3]
                sign = "-" if rest and rest[0].kind == "punct" and rest[0].text == "-" else ""
                number = rest[1] if sign and len(rest) > 1 else (rest[0] if rest else None)
                if word.is_word("GRANT", "ADMIN") and rest and rest[0].is_word("OPTION"):
                    kept.append(f"{word.text.upper()} OPTION")
                    i += 2
                elif word.is_word(*RESOURCE_LIMITS) and number is not None \
                        and number.kind == "word" and _NUMBER_RE.fullmatch(number.text):
                    found = True
                    limits[word.text.upper()] = sign + number.text
                    i += 3 if sign else 2
                else:
                    return None
        else:
            return None
    if not found:
        return None
    return ("WITH " + " ".join(kept) if kept else ""), require, limits


def split_account_options(lines: Iterable[str]) -> tuple[list[str], AccountOptions]:
    """Grant lines (as :func:`rewrite_grants` writes them) without their REQUIRE and resource
    limit clauses, and those clauses. They are set with ALTER USER instead
    (:func:`build_account_options`): on MariaDB a GRANT carrying them needs UPDATE on the mysql
    schema (error 1044), ALTER USER only CREATE USER, and REVOKE ALL does not reset them."""
    kept: list[str] = []
    require: list[tuple[str, str]] = []
    limits: dict[str, str] = {}
    for line in lines:
        grant = parse_grant(line)
        split = _split_tail(grant.tail) if grant.kind == "grant" else None
        if split is None:
            kept.append(line)
            continue
        tail, line_require, line_limits = split
        kept.append(replace(grant, tail=tail).to(grant.grantee))
        require.extend(line_require)
        limits.update(line_limits)
    nonzero = sorted((name, value) for name, value in limits.items()
                     if float(value) != 0)
    return kept, AccountOptions(tuple(require), tuple(nonzero))


def build_account_options(server: ServerInfo, account: Account,
                          options: AccountOptions) -> Statement:
    """``ALTER USER account REQUIRE ... WITH MAX_...`` giving ``account`` exactly ``options``:
    every limit is written (0 where ``options`` has none), so a requirement or limit the source
    no longer has is dropped too. Needs CREATE USER only. The keywords and numbers were checked
    when the SHOW GRANTS line was read; DN and cipher strings travel as arguments."""
    clauses: list[str] = []
    args: list[str] = []
    for kind, value in options.require:
        if value:
            clauses.append(f"{kind} %s")
            args.append(value)
        else:
            clauses.append(kind)
    have = dict(options.limits)
    names = RESOURCE_LIMITS if server.is_mariadb else RESOURCE_LIMITS[:-1]
    limits = " ".join(f"{name} {have.get(name, '0')}" for name in names)
    template = "ALTER USER {0} REQUIRE " + (" AND ".join(clauses) or "NONE") + " WITH " + limits
    return Statement.build(template, [account], args,
                           action=f"set the TLS requirement and resource limits of {account}")


@dataclass(frozen=True)
class AccountInfo:
    """An account, its authentication plugin and stored hash (never shown in ``repr``)."""

    account: Account
    plugin: str
    auth_string: str | None = field(default=None, repr=False)
    own: bool = False  # the logged-in account itself


def parse_create_user(text: str) -> tuple[str, str | None]:
    """The plugin named by a SHOW CREATE USER line, and its stored hash when the plugin is
    mysql_native_password (None otherwise). Used when mysql.user cannot be read.

    MySQL: ``IDENTIFIED WITH 'plugin' [AS 'hash']``; MariaDB: ``IDENTIFIED BY PASSWORD 'hash'``,
    ``IDENTIFIED VIA plugin [USING 'hash'] [OR ...]``, or nothing (no password)."""
    tokens = _solid(tokenize(text))
    index = next((i for i, t in enumerate(tokens) if t.is_word("IDENTIFIED")), None)
    if index is None:
        return NATIVE, ""
    rest = tokens[index + 1:]
    plugin: str | None = None
    auth: str | None = None
    if rest and rest[0].is_word("BY") and len(rest) > 2 and rest[1].is_word("PASSWORD"):
        plugin, auth = NATIVE, rest[2].value
    elif len(rest) > 1 and rest[0].is_word("WITH", "VIA") and rest[1].kind in _NAME_KINDS:
        plugin = rest[1].value
        if len(rest) > 3 and rest[2].is_word("AS", "USING") and rest[3].kind == "string":
            auth = rest[3].value
    if plugin is None:
        raise GrantParseError("cannot read the authentication plugin from SHOW CREATE USER",
                              hint="report this as a bug, with the server version")
    plugin = normalize_plugin(plugin)
    return plugin, auth if plugin == NATIVE else None


# --------------------------------------------------------------------------------------------
# Error mapping (pure)
# --------------------------------------------------------------------------------------------

ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
ER_HOST_NOT_PRIVILEGED = 1130
ER_PASSWORD_NO_MATCH = 1133
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
ER_USER_LIMIT_REACHED = 1226
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_NOT_SUPPORTED_AUTH_MODE = 1251
ER_PROCACCESS_DENIED = 1370
ER_CANNOT_USER = 1396
ER_CANT_CREATE_USER_WITH_GRANT = 1410
ER_NONEXISTING_GRANT = 1141
ER_NO_PERMISSION_TO_CREATE_USER = 1211
ER_WRONG_STRING_LENGTH = 1470
ER_SYNTAX = 1064
ER_FUNCTION_NOT_EXISTS = 1305
ER_ACCESS_DENIED_NO_PASSWORD = 1698
ER_NOT_VALID_PASSWORD = 1819
ER_MUST_CHANGE_PASSWORD = 1820
ER_MUST_CHANGE_PASSWORD_LOGIN = 1862
ER_ACCOUNT_LOCKED = 3118
ER_SECURE_TRANSPORT_REQUIRED = 3159
ER_ROLE_NOT_GRANTED = 3530
ER_CREDENTIALS_CONTRADICT_TO_HISTORY = 3638
ER_INCORRECT_CURRENT_PASSWORD = 3891
ER_MISSING_CURRENT_PASSWORD = 3892
ER_PASSWORD_CANNOT_BE_RETAINED_ON_PLUGIN_CHANGE = 3894
ER_CURRENT_PASSWORD_CANNOT_BE_RETAINED = 3895
ER_MARIADB_ACCOUNT_LOCKED = 4151
ER_MARIADB_USER_BLOCKED = 4150  # max_password_errors reached
ER_ACCOUNT_BLOCKED_BY_PASSWORD_LOCK = 3955  # MySQL 8.0.19+ FAILED_LOGIN_ATTEMPTS
ER_CON_COUNT = 1040
ER_HOST_IS_BLOCKED = 1129
ER_SERVER_OFFLINE_MODE = 3032
CR_CONNECTION_ERROR = 2002
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
CR_SSL_CONNECTION_ERROR = 2026
CR_AUTH_PLUGIN_CANNOT_LOAD = 2059
CR_AUTH_PLUGIN_ERR = 2061

PRIVILEGE_ERRNOS = frozenset({ER_DBACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_COLUMNACCESS_DENIED,
                              ER_SPECIFIC_ACCESS_DENIED, ER_PROCACCESS_DENIED,
                              ER_CANT_CREATE_USER_WITH_GRANT, ER_ROLE_NOT_GRANTED,
                              ER_NO_PERMISSION_TO_CREATE_USER})
_TIMEOUT_TEXT = re.compile(r"timed? ?out", re.IGNORECASE)
_TLS_TEXT = re.compile(r"\bSSL\b|\bTLS\b|certificate", re.IGNORECASE)


def errno_of(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    return None


def _driver_text(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    text = str(args[1]) if len(args) > 1 else str(exc)
    lines = text.strip().splitlines()
    return _redact.redact(lines[0] if lines else "")[:300]


def _kwargs(exc: BaseException) -> dict[str, Any]:
    errno = errno_of(exc)
    return {"driver_error": type(exc).__name__,
            "sqlstate": str(errno) if errno is not None else None}


@dataclass(frozen=True)
class Greeting:
    """What the server said before authentication: known even when the login fails."""

    version: str
    offers_tls: bool

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.version.lower()


def _greeting(conn: Any) -> Greeting | None:
    """The greeting PyMySQL read (None when the connection failed before it)."""
    version = getattr(conn, "server_version", None)
    capabilities = getattr(conn, "server_capabilities", None)
    if not isinstance(version, str) or not isinstance(capabilities, int):
        return None
    return Greeting(version, bool(capabilities & CLIENT.SSL))


def _access_denied(errno: int, credentials: DbCredentials, greeting: Greeting | None,
                   kwargs: dict[str, Any]) -> DatabaseError:
    """1045 / 1698: PasswordRefusedError only where a wrong password is what the server can
    mean; otherwise a plain LoginError, since trying other passwords cannot help."""
    where = f"{credentials.host}:{credentials.port}"
    user = credentials.username
    if credentials.sslmode == "disable" and (greeting is None or greeting.offers_tls):
        # A server that requires TLS (MariaDB's require_secure_transport before 11.4, or an
        # account with REQUIRE SSL) refuses a plaintext login with this same answer, right
        # password or not: no other version's password would get further.
        return LoginError(
            f"access denied for user {user!r} at {where} over an unencrypted connection (the "
            "secret disables TLS, and the server offers it)",
            hint="servers with require_secure_transport=ON (MariaDB before 11.4) and accounts "
                 "with REQUIRE SSL refuse plaintext logins with this same error: remove `ssl: "
                 "false` / `sslmode: disable` from the secret; otherwise check the password and "
                 "user", **kwargs)
    if errno == ER_ACCESS_DENIED_NO_PASSWORD and not (greeting and greeting.is_mariadb):
        # MySQL: the account's plugin took no password (auth_socket and the like).
        return LoginError(f"access denied for user {user!r} at {where}: the account "
                          "authenticates without a password (auth_socket or a similar plugin)",
                          hint="rotate only accounts that log in with a password", **kwargs)
    extra = ""
    if errno == ER_ACCESS_DENIED_NO_PASSWORD:
        # MariaDB answers a wrong password so when the account's plugin chain ends in one
        # without a password ("... OR unix_socket"); a user name unknown for this host too.
        extra = ("; MariaDB gives this answer for a wrong password when the account's plugin "
                 "chain ends in one without a password (`... OR unix_socket`), and for a "
                 "socket-only account")
    return PasswordRefusedError(
        f"access denied for user {user!r} at {where}: wrong password or user name{extra}",
        hint="check the password in the secret, and that the account exists for the host the "
             "function connects from (an account that REQUIREs X509, ISSUER or SUBJECT needs "
             "a client certificate, which this function does not send, and gets the same "
             "answer)", **kwargs)


def map_connect_error(exc: BaseException, credentials: DbCredentials,
                      options: AdapterOptions | None = None, *,
                      greeting: Greeting | None = None) -> DatabaseError:
    """The framework error for a failed login (PyMySQL error, OSError or RuntimeError).
    ``greeting`` (the server's version and whether it offers TLS, read before the login was
    refused) tells a wrong password from a refusal no password fixes where the errno alone
    cannot."""
    where = f"{credentials.host}:{credentials.port}"
    user = credentials.username
    timeout = options.connect_timeout if options else None
    kwargs = _kwargs(exc)
    errno = errno_of(exc)
    original = getattr(exc, "original_exception", None)
    if isinstance(exc, OSError) and original is None:
        original = exc
    if isinstance(original, ssl.SSLCertVerificationError):
        reason = getattr(original, "verify_message", None) or "certificate verify failed"
        return TlsError(f"TLS certificate verification failed for {where}: {reason}",
                        hint=TLS_HINT, **kwargs)
    if isinstance(original, ssl.SSLError):
        reason = getattr(original, "reason", None) or original.strerror or type(original).__name__
        return TlsError(f"the TLS handshake with {where} failed: {reason}", hint=TLS_HINT,
                        **kwargs)
    if isinstance(original, TimeoutError):
        within = f" within {timeout:g}s" if timeout else ""
        return DbTimeoutError(f"no answer from {where}{within}", hint=NETWORK_HINT, **kwargs)
    if isinstance(original, ConnectionRefusedError):
        return ConnectError(f"{where} refused the connection", hint=NETWORK_HINT, **kwargs)
    if isinstance(original, socket.gaierror):
        return ConnectError(f"the host name {credentials.host!r} does not resolve",
                            hint="check `host` in the secret, and the VPC's DNS settings",
                            **kwargs)
    if isinstance(original, OSError):
        reason = original.strerror or type(original).__name__
        return ConnectError(f"cannot reach {where}: {reason}", hint=NETWORK_HINT, **kwargs)
    if isinstance(exc, RuntimeError) and "nacl" in str(exc).lower():
        return LoginError(f"user {user!r} at {where} authenticates with ed25519, which needs "
                          "the PyNaCl package", hint="add pynacl to the MySQL driver layer",
                          **kwargs)
    if errno in (ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD):
        return _access_denied(errno, credentials, greeting, kwargs)
    if errno == ER_SECURE_TRANSPORT_REQUIRED:
        return TlsError(f"{where} refuses unencrypted connections (require_secure_transport), "
                        "and the secret disables TLS",
                        hint="remove `ssl: false` / `sslmode: disable` from the secret", **kwargs)
    if errno == CR_SSL_CONNECTION_ERROR:
        return TlsError(f"{where} does not offer TLS, which sslmode {credentials.sslmode} "
                        "requires", hint="enable TLS on the server; " + TLS_HINT, **kwargs)
    if errno == ER_DBACCESS_DENIED:
        return PrivilegeError(f"user {user!r} may not use database {credentials.dbname!r} at "
                              f"{where}", hint="fix `dbname` in the secret, or grant the user "
                                               "access to it", **kwargs)
    if errno == ER_BAD_DB:
        return DatabaseError(f"database {credentials.dbname!r} does not exist at {where}",
                             hint="fix `dbname` in the secret", **kwargs)
    if errno == ER_HOST_NOT_PRIVILEGED:
        return LoginError(f"user {user!r} may not connect to {where} from the function's "
                          "address", hint="create the account for the function's host "
                                          "(for example 'user'@'%')", **kwargs)
    if errno in (ER_ACCOUNT_LOCKED, ER_MARIADB_ACCOUNT_LOCKED):
        return LoginError(f"the account of user {user!r} at {where} is locked",
                          hint="unlock it: ALTER USER ... ACCOUNT UNLOCK", **kwargs)
    if errno in (ER_MARIADB_USER_BLOCKED, ER_ACCOUNT_BLOCKED_BY_PASSWORD_LOCK):
        return LoginError(f"the account of user {user!r} at {where} is blocked after too many "
                          "failed logins", hint="find what logs in with a wrong password; "
                                                "unblock it with ALTER USER ... ACCOUNT UNLOCK "
                                                "(MariaDB: or FLUSH PRIVILEGES)", **kwargs)
    if errno in (ER_MUST_CHANGE_PASSWORD_LOGIN, ER_MUST_CHANGE_PASSWORD):
        return LoginError(f"the password of user {user!r} at {where} has expired",
                          hint="set a new password by hand, then put it in the secret",
                          **kwargs)
    if errno in (ER_NOT_SUPPORTED_AUTH_MODE, CR_AUTH_PLUGIN_CANNOT_LOAD):
        return LoginError(f"user {user!r} at {where} uses an authentication plugin PyMySQL "
                          "does not support", hint="use mysql_native_password or "
                                                   "caching_sha2_password", **kwargs)
    if errno == CR_AUTH_PLUGIN_ERR:
        return TlsError(f"the authentication plugin of user {user!r} at {where} needs a "
                        "secure connection", hint="do not disable TLS in the secret", **kwargs)
    if errno == ER_USER_LIMIT_REACHED:
        return ConnectError(f"user {user!r} at {where} has reached a resource limit: "
                            f"{_driver_text(exc)}",
                            hint="the account's MAX_USER_CONNECTIONS / MAX_CONNECTIONS_PER_HOUR "
                                 "(or max_user_connections) is used up: wait, or raise it with "
                                 "ALTER USER ... WITH ...", **kwargs)
    if errno == ER_CON_COUNT:
        return ConnectError(f"{where} refused the connection: {_driver_text(exc)}",
                            hint="the server's max_connections is reached: close idle "
                                 "connections or raise it", **kwargs)
    if errno == ER_HOST_IS_BLOCKED:
        return ConnectError(f"{where} refused the connection: {_driver_text(exc)}",
                            hint="the function's address is blocked after too many connection "
                                 "errors (max_connect_errors): FLUSH HOSTS", **kwargs)
    if errno == ER_SERVER_OFFLINE_MODE:
        return ConnectError(f"{where} is in offline mode", hint="wait for the server to leave "
                                                                "offline_mode", **kwargs)
    if errno in (CR_SERVER_LOST, CR_SERVER_GONE, CR_CONN_HOST_ERROR, CR_CONNECTION_ERROR,
                 CR_UNKNOWN_HOST):
        text = _driver_text(exc)
        if _TIMEOUT_TEXT.search(text):
            return DbTimeoutError(f"no answer from {where} in time", hint=NETWORK_HINT, **kwargs)
        if errno != CR_SERVER_LOST and _TLS_TEXT.search(text):
            return TlsError(f"TLS with {where} failed: {text}", hint=TLS_HINT, **kwargs)
        return ConnectError(f"lost the connection to {where} while logging in as {user!r}",
                            hint=NETWORK_HINT, **kwargs)
    return DatabaseError(f"login to {where} as {user!r} failed: {_driver_text(exc)}", **kwargs)


def map_statement_error(exc: BaseException, statement: Statement, where: str,
                        *, dual_password: bool = False) -> DatabaseError:
    """The framework error for a failed statement. The driver's text is included (scrubbed)
    only when the statement carries no secret."""
    kwargs = _kwargs(exc)
    errno = errno_of(exc)
    what = f"could not {statement.action or 'run a statement'} on {where}"
    detail = "" if statement.carries_secret else f": {_driver_text(exc)}"
    if errno in PRIVILEGE_ERRNOS or errno in (ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD):
        # MariaDB answers GRANT of a role without ADMIN OPTION with 1698 "access denied"
        hint = MASTER_PRIVILEGE_HINT
        if dual_password and errno == ER_SPECIFIC_ACCESS_DENIED:
            hint = ("with dual passwords, a user changing its own password needs the "
                    "APPLICATION_PASSWORD_ADMIN privilege; or use alternating users")
        return PrivilegeError(f"{what}: the logged-in user lacks a privilege{detail}",
                              hint=hint, **kwargs)
    if errno in (ER_PASSWORD_NO_MATCH, ER_NONEXISTING_GRANT):
        return DatabaseError(f"{what}: the account does not exist",
                             hint="check `username` in the secret", **kwargs)
    if errno == ER_NOT_VALID_PASSWORD:
        return DatabaseError(f"{what}: the new password does not satisfy the server's password "
                             "policy", hint="adjust PASSWORD_LENGTH / EXCLUDE_* so generated "
                                            "passwords satisfy validate_password", **kwargs)
    if errno == ER_CREDENTIALS_CONTRADICT_TO_HISTORY:
        return DatabaseError(f"{what}: the server's password history refuses this password",
                             hint="the password was used before; let the rotation generate a "
                                  "new one", **kwargs)
    if errno in (ER_MISSING_CURRENT_PASSWORD, ER_INCORRECT_CURRENT_PASSWORD):
        return PrivilegeError(f"{what}: the account requires its current password to change it "
                              "(PASSWORD REQUIRE CURRENT)",
                              hint="ALTER USER ... PASSWORD REQUIRE CURRENT OPTIONAL, or let a "
                                   "master user change it (alternating users)", **kwargs)
    if errno in (ER_CURRENT_PASSWORD_CANNOT_BE_RETAINED,
                 ER_PASSWORD_CANNOT_BE_RETAINED_ON_PLUGIN_CHANGE):
        return DatabaseError(f"{what}: the server cannot retain the current password (it is "
                             "empty, or the plugin changes)",
                             hint="turn dual passwords off for this account", **kwargs)
    if errno == ER_WRONG_STRING_LENGTH:
        return DatabaseError(f"{what}: a name is too long for this server (user names: 32 "
                             "characters on MySQL 5.7.8 and later, 16 before, 80 on MariaDB)",
                             hint="use a shorter user name", **kwargs)
    if errno == ER_MUST_CHANGE_PASSWORD:
        return LoginError(f"{what}: the password of the logged-in user has expired (the "
                          "server allows nothing but setting a new one)",
                          hint="set a new password by hand, then put it in the secret",
                          **kwargs)
    if errno == ER_USER_LIMIT_REACHED:
        return DatabaseError(f"{what}: the logged-in user has reached a resource limit "
                             "(MAX_QUERIES_PER_HOUR / MAX_UPDATES_PER_HOUR)",
                             hint="wait for the hour to pass, or raise the account's limit "
                                  "with ALTER USER ... WITH ...", **kwargs)
    if errno == ER_CANNOT_USER:
        return DatabaseError(f"{what}: the server refused the account change{detail}",
                             hint="check that the account exists (or not, for a new one)",
                             **kwargs)
    if errno == ER_SYNTAX:
        return DatabaseError(f"{what}: the server did not accept the statement's syntax{detail}",
                             hint="report this as a bug, with the server version", **kwargs)
    if errno in (CR_SERVER_LOST, CR_SERVER_GONE):
        text = _driver_text(exc)
        if _TIMEOUT_TEXT.search(text):
            return DbTimeoutError(f"{what}: no answer in time",
                                  hint="the statement timeout is AdapterOptions."
                                       "statement_timeout; check for locks on mysql.*",
                                  **kwargs)
        return ConnectError(f"{what}: the connection was lost", hint=NETWORK_HINT, **kwargs)
    return DatabaseError(f"{what}{detail}", **kwargs)


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------

def make_ssl_context(sslmode: SslMode, ca_bundle: str | None) -> ssl.SSLContext | None:
    """The SSLContext for ``sslmode`` (None for ``disable``). Raises TlsError when the CA
    bundle cannot be read."""
    if sslmode == "disable":
        return None
    if sslmode == "require":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # encrypted, nothing verified
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context = ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        error = TlsError(f"cannot load the CA bundle {ca_bundle!r}: {reason}",
                         hint="set ROTATION_CA_BUNDLE to a readable PEM file")
    else:
        context.check_hostname = sslmode == "verify-full"
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
        return context
    raise error


# --------------------------------------------------------------------------------------------
# Session and adapter
# --------------------------------------------------------------------------------------------

class MySQLSession:
    """An authenticated PyMySQL connection (autocommit). See the module docstring."""

    def __init__(self, conn: Any, credentials: DbCredentials, options: AdapterOptions) -> None:
        self._conn: Any = conn
        self._login_user = credentials.username
        self._engine = credentials.engine
        self._where = f"{credentials.host}:{credentials.port}"
        self._options = options
        self._server: ServerInfo | None = None

    def __repr__(self) -> str:
        return f"<MySQLSession {self._login_user!r} at {self._where}>"

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> MySQLSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(pymysql.err.Error, OSError):
            conn.close()  # sends COM_QUIT; closes the socket whatever happens

    # -- the DatabaseSession methods ---------------------------------------------------------

    def ping(self) -> None:
        self._run(Statement("SELECT 1", action="run SELECT 1"))

    def set_password(self, username: str, password: str) -> None:
        """Set ``username``'s password, keeping each account's plugin (see the module table).

        The logged-in user changes its own account (``CURRENT_USER()``); on MySQL, an account
        without CREATE USER may only do that with ``IDENTIFIED BY`` (plaintext over TLS), which
        is used when the pre-hashed form is refused. Another user's name may exist with several
        host parts (``'app'@'%'``, ``'app'@'10.0.%'``): every one of them gets the new password
        (a master needs CREATE USER for this). With ``dual_password`` (MySQL 8.0.14+) the old
        password is retained (a user changing itself needs APPLICATION_PASSWORD_ADMIN); to stay
        idempotent, an account whose stored native hash already is the new password's is left
        alone (for other plugins the caller must check with a login first, or a second run
        would retain the new password and drop the old one)."""
        check_username(username)
        server = self.server
        dual = self._options.dual_password
        if dual:
            check_dual_password_support(server)
        accounts = self._accounts(username)
        for info in accounts:
            if dual and info.plugin == NATIVE and info.auth_string is not None \
                    and info.auth_string == native_password_hash(password):
                log.info("account %s already has the new password; not retaining it again",
                         info.account)
                continue
            statement = build_set_password(server, info.account, info.plugin, password,
                                           retain_current=dual, own=info.own)
            _redact.register(password, *statement.args)
            try:
                self._run(statement)
                continue
            except PrivilegeError as exc:
                # MySQL lets an account without CREATE USER change itself only with
                # IDENTIFIED BY: fall back to it (plaintext over TLS) for its own account.
                fallback = (info.own and not server.is_mariadb and info.plugin == NATIVE
                            and exc.sqlstate == str(ER_SPECIFIC_ACCESS_DENIED))
                if not fallback:
                    raise
            log.info("account %s may not set a pre-hashed password on itself; sending it "
                     "with IDENTIFIED BY over TLS", info.account)
            self._run(build_set_password(server, info.account, info.plugin, password,
                                         retain_current=dual, own=True, hashed=False))

    def sync_clone(self, source_username: str, clone_username: str, password: str) -> None:
        """Create ``clone_username`` for every host part of ``source_username`` (same plugin),
        set its password, and make its privileges match the source's now. An existing clone's
        privileges are synced before its password is set, so a sync that fails leaves it as
        it was.

        Grants: ``SHOW GRANTS`` of the source is rewritten to the clone (the grantee token is
        replaced; ``IDENTIFIED ...`` clauses are dropped). When the clone's grants already
        match, nothing runs. Otherwise, first the source's lines the clone lacks are granted:
        this takes nothing away, so a privilege the master may not grant fails here
        (PrivilegeError) with the clone's privileges intact. Only if the clone still holds
        more than the source are the role and PROXY grants no longer wanted revoked, then
        ``REVOKE ALL PRIVILEGES, GRANT OPTION``, and the source's lines replayed (all of them
        just proved grantable), so grants removed from the source disappear; there is a short
        window between REVOKE ALL and the replay. Role grants (MySQL 8, MariaDB) are copied
        like any grant; default roles too (MariaDB: from SHOW GRANTS, which needs UPDATE on
        mysql.*; MySQL 8: from mysql.default_roles).

        Account options: on MariaDB the TLS requirement and resource limits (``REQUIRE``,
        ``MAX_..._PER_HOUR``, ``MAX_USER_CONNECTIONS``, ``MAX_STATEMENT_TIME``) of the global
        SHOW GRANTS line are set with ``ALTER USER`` (CREATE USER suffices; the same clauses
        on GRANT need UPDATE on mysql.*), and removed again when the source drops them.

        Limits: MySQL 5.7+ account options that SHOW GRANTS does not show (REQUIRE, resource
        limits), and password expiry and account lock everywhere, are not copied. Clone
        accounts on hosts the source lacks are left alone.
        """
        check_username(source_username, what="source username")
        check_username(clone_username, what="clone username")
        if source_username == clone_username:
            raise SecretFormatError("the clone user has the same name as the source user",
                                    key="username", hint="use a different name for the clone")
        server = self.server
        sources = self._accounts(source_username, as_other=True)
        existing = {info.account.host.lower(): info
                    for info in self._lookup_accounts(clone_username)}
        if len(existing) < len(sources) and len(clone_username) > server.max_username_length:
            raise SecretFormatError(
                f"the clone user name {clone_username!r} is {len(clone_username)} characters "
                f"long; {server.describe()} allows {server.max_username_length}",
                key="username", hint="use single-user rotation, or a user name short enough "
                                     "for `name_clone` to fit")
        for source in sources:
            target = Account(clone_username, source.account.host)
            current = existing.get(target.host.lower())
            if current is None:
                statement = build_create_user(server, target, source.plugin, password)
                _redact.register(password, *statement.args)
                self._run(statement)
                self._sync_privileges(source.account, target)
                continue
            # An existing clone is the previous user, possibly still in use: its privileges are
            # synced before its password changes, so a privilege the master lacks fails the
            # sync with the clone untouched.
            target = current.account
            self._sync_privileges(source.account, target)
            statement = build_set_password(server, target, source.plugin, password,
                                           current_plugin=current.plugin)
            _redact.register(password, *statement.args)
            self._run(statement)

    def discard_old_password(self, username: str) -> None:
        """Drop the retained secondary password of every account of ``username``; a no-op
        unless ``dual_password`` is on (ConfigError on servers without dual passwords)."""
        if not self._options.dual_password:
            return
        check_username(username)
        server = self.server
        check_dual_password_support(server)
        for info in self._accounts(username):
            self._run(build_discard_old_password(server, info.account))

    # -- server and accounts -----------------------------------------------------------------

    @property
    def server(self) -> ServerInfo:
        """What the server is (queried once per session)."""
        if self._server is None:
            rows = self._run(Statement("SELECT VERSION(), @@version_comment",
                                       action="read the server version"))
            version, comment = (str(rows[0][0] or ""), str(rows[0][1] or "")) if rows else ("", "")
            aurora: str | None = None
            if self._engine == "aurora-mysql" or "aurora" in version.lower():
                try:
                    found = self._run(Statement("SELECT AURORA_VERSION()",
                                                action="read the Aurora version"))
                    aurora = str(found[0][0]) if found else None
                except DatabaseError:
                    aurora = None
            self._server = ServerInfo.parse(version, comment, aurora)
        return self._server

    def _accounts(self, username: str, *, as_other: bool = False) -> list[AccountInfo]:
        """The accounts ``username`` names: the logged-in account for the logged-in user,
        every host part for another user. Raises when there is none."""
        if username == self._login_user and not as_other:
            return [self._current_account()]
        accounts = self._lookup_accounts(username)
        if not accounts:
            raise DatabaseError(f"user {username!r} does not exist at {self._where}",
                                hint="check `username` in the secret")
        return accounts

    def _lookup_accounts(self, username: str) -> list[AccountInfo]:
        try:
            rows = self._run(build_accounts_query(self.server, username))
        except PrivilegeError as exc:
            exc.hint = MASTER_PRIVILEGE_HINT
            raise
        return [AccountInfo(Account(username, _text(row[0])), normalize_plugin(_text(row[1])),
                            _text(row[2])) for row in rows]

    def _current_account(self) -> AccountInfo:
        rows = self._run(Statement("SELECT CURRENT_USER()", action="read CURRENT_USER()"))
        current = _text(rows[0][0]) if rows else ""
        prefix = self._login_user + "@"
        if not current.startswith(prefix):
            raise DatabaseError(
                f"logged in as {self._login_user!r}, but the server maps the login to the "
                f"account {current!r}", hint="create a dedicated account for the user (an "
                                             "anonymous or proxy account cannot be rotated)")
        account = Account(self._login_user, current[len(prefix):])
        try:
            rows = self._run(build_account_query(account))
        except PrivilegeError:
            rows = []
        if rows:
            return AccountInfo(account, normalize_plugin(_text(rows[0][1])), _text(rows[0][2]),
                               own=True)
        # No SELECT on mysql.user: a user may read its own definition.
        rows = self._run(build_show_create_user(account))
        plugin, auth = parse_create_user(_text(rows[0][0]) if rows else "")
        return AccountInfo(account, plugin, auth, own=True)

    # -- grants ------------------------------------------------------------------------------

    def _show_grants(self, account: Account) -> list[str]:
        return [_text(row[0]) for row in self._run(build_show_grants(account))]

    def _grants_of(self, account: Account, target: Account) -> tuple[list[str], AccountOptions]:
        """``account``'s grants written for ``target``, and its REQUIRE / resource limits
        apart where ALTER USER can set them."""
        lines = rewrite_grants(self._show_grants(account), account, target)
        if not self.server.has_alter_user_options:
            return lines, AccountOptions()
        return split_account_options(lines)

    def _sync_privileges(self, source: Account, target: Account) -> None:
        self._sync_grants(source, target)
        if self.server.has_default_roles_table:
            self._sync_default_roles(source, target)

    def _sync_grants(self, source: Account, target: Account) -> None:
        desired, wanted = self._grants_of(source, target)
        current, options = self._grants_of(target, target)
        if wanted != options:
            self._run(build_account_options(self.server, target, wanted))
        additions = plan_grant_additions(desired, current, target)
        for statement in additions:
            try:
                self._run(statement)
            except DatabaseError as exc:
                raise _noted(exc, f"nothing was revoked from {target}") from None
        if additions:
            current, _ = self._grants_of(target, target)
        revoked = False
        for statement in plan_grant_sync(desired, current, target):
            try:
                self._run(statement)
            except DatabaseError as exc:
                if not revoked:
                    raise
                # Every replayed line was granted a moment ago: only a concurrent change
                # (or a lost connection) gets here. Say what state the clone is in.
                raise _noted(exc, f"{target} was left with part of the privileges of "
                                  f"{source}; the next sync restores them") from None
            revoked = revoked or statement.sql.startswith("REVOKE ALL PRIVILEGES")

    def _sync_default_roles(self, source: Account, target: Account) -> None:
        wanted = [Account(_text(r[0]), _text(r[1]))
                  for r in self._run(build_default_roles_query(source))]
        have = [Account(_text(r[0]), _text(r[1]))
                for r in self._run(build_default_roles_query(target))]
        if sorted(wanted) != sorted(have):
            self._run(build_set_default_roles(target, wanted))

    # -- execution ---------------------------------------------------------------------------

    def _run(self, statement: Statement) -> list[tuple[Any, ...]]:
        if self._conn is None:
            raise DatabaseError(f"the session to {self._where} is closed",
                                hint="open a new session")
        try:
            with self._conn.cursor() as cursor:
                cursor.execute(statement.sql, statement.args if statement.args else None)
                rows = [tuple(row) for row in cursor.fetchall()]
        except (pymysql.err.Error, OSError, UnicodeDecodeError) as exc:
            error = map_statement_error(exc, statement, self._where,
                                        dual_password=self._options.dual_password)
        else:
            return rows
        raise error  # outside the except block: no driver exception in __context__


def _noted(error: DatabaseError, note: str) -> DatabaseError:
    """``error`` again (same class, errno and hint) with ``note`` added to its message."""
    noted = type(error)(f"{error.message}; {note}", hint=error.hint,
                        driver_error=error.driver_error, sqlstate=error.sqlstate)
    return noted


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class MySQLAdapter:
    """Engines ``mysql``, ``mariadb`` and ``aurora-mysql`` through PyMySQL."""

    family: ClassVar[str] = "mysql"
    #: MySQL's 32 characters: what clone names are made to fit. A secret's own user may be as
    #: long as its engine allows (:meth:`username_limit`: MariaDB's 80 for ``mariadb``).
    max_username_length: ClassVar[int] = MAX_USERNAME_LENGTH

    def __init__(self, options: AdapterOptions) -> None:
        self.options = options
        self._contexts: dict[SslMode, ssl.SSLContext | None] = {}

    def __repr__(self) -> str:
        return f"<MySQLAdapter ca_bundle={self.options.ca_bundle!r}>"

    def ssl_context(self, sslmode: SslMode) -> ssl.SSLContext | None:
        """The (cached) SSLContext for ``sslmode``; None for ``disable``."""
        if sslmode not in self._contexts:
            self._contexts[sslmode] = make_ssl_context(sslmode, self.options.ca_bundle)
        return self._contexts[sslmode]

    def connect_kwargs(self, credentials: DbCredentials) -> dict[str, Any]:
        """PyMySQL's connect() arguments for ``credentials`` (the password as UTF-8 bytes)."""
        kwargs: dict[str, Any] = {
            "host": credentials.host,
            "port": credentials.port,
            "user": credentials.username,
            "password": credentials.password.encode("utf-8"),
            "charset": "utf8mb4",
            "autocommit": True,
            "connect_timeout": self.options.connect_timeout,
            # The greeting, TLS handshake and authentication are reads: bound them by the
            # connect timeout too (connect() switches to the statement timeout after login).
            "read_timeout": min(self.options.connect_timeout, self.options.statement_timeout),
            "write_timeout": self.options.statement_timeout,
        }
        if credentials.dbname:
            kwargs["database"] = credentials.dbname
        context = self.ssl_context(credentials.sslmode)
        if context is None:
            kwargs["ssl_disabled"] = True
        else:
            kwargs["ssl"] = context
        return kwargs

    def connect(self, credentials: DbCredentials) -> MySQLSession:
        """Log in; PasswordRefusedError (wrong password or user) / LoginError (any other
        refusal) / TlsError / ConnectError / DbTimeoutError on failure. No retry and never a
        retry without TLS."""
        _redact.register(credentials.password)
        # A secret that disables TLS is warned about by the steps (StepContext), not here.
        kwargs = self.connect_kwargs(credentials)
        # Deferred, so that the greeting (version, TLS offered) is still at hand when the login
        # is refused: it tells a wrong password from a refusal no other password fixes.
        conn: Any = None
        try:
            conn = pymysql.connections.Connection(defer_connect=True, **kwargs)
            conn.connect()
        except (pymysql.err.Error, OSError, RuntimeError) as exc:
            error = map_connect_error(exc, credentials, self.options, greeting=_greeting(conn))
        else:
            # PyMySQL re-applies _read_timeout before each read; it has no public setter.
            conn._read_timeout = self.options.statement_timeout
            return MySQLSession(conn, credentials, self.options)
        raise error  # outside the except block: no driver exception in __context__

    def clone_username(self, username: str) -> str:
        """``username + "_clone"``, or, past 32 characters, see :func:`clone_username`."""
        return clone_username(username, self.max_username_length)

    def username_limit(self, engine: str, strategy: str) -> int:
        """The longest user name a secret of ``engine`` may hold: 80 characters for
        ``mariadb``, 32 for ``mysql`` and ``aurora-mysql``. The same under every strategy: an
        alternating pair's clone name is shortened to 32 whatever the original's length."""
        del strategy  # see above
        return ENGINE_USERNAME_LIMITS.get(engine, MAX_USERNAME_LENGTH)


__all__ = [
    "Account",
    "AccountInfo",
    "AccountOptions",
    "GrantLine",
    "GrantParseError",
    "Greeting",
    "MySQLAdapter",
    "MySQLSession",
    "ServerInfo",
    "Statement",
    "build_account_options",
    "build_create_user",
    "build_discard_old_password",
    "build_set_password",
    "clone_username",
    "ed25519_password_hash",
    "make_ssl_context",
    "map_connect_error",
    "map_statement_error",
    "native_password_hash",
    "parse_create_user",
    "parse_grant",
    "plan_grant_additions",
    "plan_grant_sync",
    "rewrite_grants",
    "split_account_options",
]
