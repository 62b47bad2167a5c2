"""What the server is, and the statement each server gets (pure).

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

With dual passwords (``ROTATION_STRATEGY=dual-password``, MySQL 8.0.14+), the statements end in
``RETAIN CURRENT PASSWORD``, and which of them run is decided from the account's stored state
(:func:`plan_add_password`). A clone whose plugin differs from its source's is switched with
``ALTER USER ... IDENTIFIED {WITH|VIA} <plugin> {AS|USING|BY} ...``; a new clone is made with
``CREATE USER`` in the same form (``CREATE USER a IDENTIFIED WITH mysql_native_password AS
'*HEX'``, ``... IDENTIFIED BY PASSWORD '*HEX'`` on MariaDB, ``... IDENTIFIED VIA ed25519 USING
'<key>'``, ...).

Syntax is chosen from what the server says it is (:class:`ServerInfo`: ``VERSION()``,
``@@version_comment``, ``AURORA_VERSION()``), never from the engine name in the secret:

* MariaDB: ``'MariaDB'`` in the version (a ``5.5.5-`` prefix is dropped).
* Dual passwords (``RETAIN CURRENT PASSWORD`` / ``DISCARD OLD PASSWORD``): MySQL 8.0.14 and later
  (Aurora MySQL 3 included). MariaDB has none: use ``ROTATION_STRATEGY=alternating-users``.

Dual passwords (:func:`plan_add_password`). MySQL keeps a primary and at most one secondary
password per account; the goal of a rotation's setSecret is primary = the new password,
secondary = the current one (``keep``). ``ALTER USER ... RETAIN CURRENT PASSWORD`` makes the old
primary the secondary, which is right only when the primary is ``keep``: run again after it
succeeded (a retry), it would retain the new password and drop ``keep``, the password in use. So
the statements are chosen from what is stored: the primary's ``authentication_string`` and the
secondary in ``mysql.user.User_attributes`` (``$.additional_password``), compared with hashes
computed here for ``mysql_native_password``. ``caching_sha2_password`` and ``sha256_password``
hashes are salted and cannot be compared: a user changing itself with ``keep`` has proved by
its login that ``keep`` is one of the two, so only when the account holds a secondary does a
second login with the new password (one failed login when it is not set yet) tell a retry from
a first run. Whenever the stored state is not the expected one, ``keep`` is set again before
the new password, both retaining: every password that logged in before still does after each
statement, and the end state is the goal (a password-history policy refuses setting ``keep``
again; that is reported, with nothing changed).
* ``ALTER USER ... IDENTIFIED WITH ... AS``: MySQL 5.7.6 and later; older MySQL sets the hash with
  ``SET PASSWORD``. MySQL 8 reads a ``SET PASSWORD ... = '<literal>'`` as plaintext, so that form
  is never used there.
* MariaDB 10.4+: ``SET PASSWORD`` keeps an account's chain of plugins (``... OR unix_socket``).
* Aurora MySQL: ``AURORA_VERSION()`` is asked when the engine is ``aurora-mysql`` (or the version
  mentions Aurora); Aurora 2 counts as at least MySQL 5.7.12, Aurora 3 as at least 8.0.23.

A :class:`Statement` keeps its secret values apart, as query arguments (see
:mod:`rotation.adapters.mysql.names` for how accounts are quoted), and says what it does without
them, for messages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rotation.adapters.mysql.auth import (
    CLIENT_HASHED_PLUGINS,
    ED25519,
    NATIVE,
    PLAINTEXT_PLUGINS,
    ed25519_password_hash,
    native_password_hash,
    normalize_plugin,
)
from rotation.adapters.mysql.names import (
    MARIADB_MAX_USERNAME_LENGTH,
    MAX_USERNAME_LENGTH,
    OLD_MAX_USERNAME_LENGTH,
    Account,
    account_sql,
    quote_string,
)
from rotation.errors import ConfigError, DatabaseError, SecretFormatError

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


def check_dual_password_support(server: ServerInfo) -> None:
    """Raise ConfigError when dual passwords are asked for on a server without them."""
    if server.supports_dual_passwords:
        return
    if server.is_mariadb:
        raise ConfigError(
            f"ROTATION_STRATEGY=dual-password needs dual passwords, but the server is "
            f"{server.describe()}, and MariaDB has no dual passwords",
            hint="use ROTATION_STRATEGY=alternating-users (or single-user) for this secret")
    raise ConfigError(
        f"ROTATION_STRATEGY=dual-password needs dual passwords, but the server is "
        f"{server.describe()}; they need MySQL 8.0.14 or later",
        hint="upgrade the server, or use ROTATION_STRATEGY=alternating-users (or single-user)")


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


# --------------------------------------------------------------------------------------------
# Dual passwords (pure): what is stored, what to run
# --------------------------------------------------------------------------------------------

#: what a stored password is, compared with the two a rotation knows: the new one
#: ("password"), the current one ("keep"), another one ("other"), no secondary at all
#: ("none"), or not comparable (salted hashes, or the secondary could not be read: "unknown")
Stored = Literal["password", "keep", "other", "none", "unknown"]
#: ask again with ``password_logs_in`` (a login with the new password, on a second connection)
PROBE: Literal["probe"] = "probe"
#: the passwords to set, in order, each with RETAIN CURRENT PASSWORD
AddPlan = tuple[Literal["keep", "password"], ...]


def stored_as(plugin: str, stored: str | None, password: str, keep: str, *,
              secondary: bool = False) -> Stored:
    """What ``stored`` (an ``authentication_string`` or ``additional_password``) holds.

    ``None`` is "unknown" for the primary (not read) and for the secondary (not readable); an
    empty secondary is "none". Only ``mysql_native_password`` hashes (``*HEX``, unsalted) can be
    compared; any other plugin's are "unknown"."""
    if stored is None:
        return "unknown"
    text = stored.strip()
    if secondary and text == "":
        return "none"
    if normalize_plugin(plugin) != NATIVE:
        return "unknown"
    if text.upper() == native_password_hash(password):
        return "password"
    if text.upper() == native_password_hash(keep):
        return "keep"
    return "other"


def plan_add_password(primary: Stored, secondary: Stored, *, keep_logs_in: bool,
                      password_logs_in: bool | None = None) -> AddPlan | Literal["probe"]:
    """The passwords to set (each retaining the current one) so that afterwards the primary is
    the new password and the secondary ``keep``; or :data:`PROBE` when only a login with the
    new password can tell (then ask again with ``password_logs_in``).

    ``keep_logs_in``: the session logged in as this account with ``keep`` (the user changing
    itself), which proves ``keep`` is the primary or the secondary.

    ``("keep", "password")`` is the safe sequence for any state: ``keep`` becomes the primary
    (the previous primary is retained), then the new password does (``keep`` is retained).
    Every password valid before stays valid after the first statement, so a crash between
    the two loses nothing, and a retry runs the same plan again."""
    if primary == "keep":
        return ("password",)  # the first run: retain keep, add the new one
    if primary == "password":
        if secondary == "keep" or (secondary == "unknown" and keep_logs_in):
            return ()  # already done (a retry): running RETAIN again would drop keep
        return ("keep", "password")
    if primary == "unknown" and keep_logs_in:
        if secondary == "none":
            return ("password",)  # keep logs in and there is no secondary: it is the primary
        if password_logs_in is None:
            return PROBE
        if password_logs_in:
            # Both log in; this adapter only ever makes the new password valid as the primary
            # (or, in the safe sequence, with keep in the other place, which the next
            # rotation's safe sequence handles): nothing to do.
            return ()
    return ("keep", "password")


def describe_add_plan(plan: AddPlan) -> str:
    """``plan`` in words, for log lines (no secret)."""
    if plan == ():
        return "already holds the new password beside the current one; nothing to do"
    if plan == ("password",):
        return "the new password, retaining the current one"
    return ("the current password again (the stored state is not the expected one), then the "
            "new one, each retaining the password before")


def build_add_password(server: ServerInfo, account: Account, plugin: str | None, plan: AddPlan,
                       password: str, keep: str, *, own: bool = False,
                       hashed: bool = True) -> list[Statement]:
    """The statements of ``plan`` for ``account`` (MySQL 8.0.14+; ConfigError elsewhere): one
    ``ALTER USER ... RETAIN CURRENT PASSWORD`` per password to set, in order."""
    check_dual_password_support(server)
    values = {"password": password, "keep": keep}
    return [build_set_password(server, account, plugin, values[which], retain_current=True,
                               own=own, hashed=hashed) for which in plan]


def build_dual_accounts_query(server: ServerInfo, username: str) -> Statement:
    """Every account named ``username``, with its plugin, primary and secondary password
    (MySQL 8.0.14+ keeps the secondary in ``User_attributes``)."""
    check_dual_password_support(server)
    return Statement(
        "SELECT Host, plugin, authentication_string, "
        "JSON_UNQUOTE(JSON_EXTRACT(User_attributes, '$.additional_password')) "
        "FROM mysql.user WHERE User = %s ORDER BY Host",
        (username,), action=f"look up the accounts and passwords of user {username!r}")


def build_dual_account_query(account: Account) -> Statement:
    return Statement(
        "SELECT Host, plugin, authentication_string, "
        "JSON_UNQUOTE(JSON_EXTRACT(User_attributes, '$.additional_password')) "
        "FROM mysql.user WHERE User = %s AND Host = %s",
        (account.user, account.host), action=f"look up the passwords of the account {account}")


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


__all__ = [
    "PROBE",
    "AddPlan",
    "ServerInfo",
    "Statement",
    "Stored",
    "build_account_query",
    "build_accounts_query",
    "build_add_password",
    "build_create_user",
    "build_default_roles_query",
    "build_discard_old_password",
    "build_dual_account_query",
    "build_dual_accounts_query",
    "build_set_default_roles",
    "build_set_password",
    "build_show_create_user",
    "build_show_grants",
    "check_dual_password_support",
    "describe_add_plan",
    "plan_add_password",
    "stored_as",
]
