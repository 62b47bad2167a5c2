"""Account names: quoting, user name limits and clone names (pure; PyMySQL only for its
string escaping).

Account names are written as backtick-quoted identifiers (a backtick doubled), which means the
same under every ``sql_mode`` (``NO_BACKSLASH_ESCAPES``, ``ANSI_QUOTES``); secret values travel
as query arguments, escaped by PyMySQL for the session's ``sql_mode``. When a statement has
arguments, ``%`` in the account is written ``%%`` (PyMySQL interpolates with ``%``).

User name limits: MySQL (5.7.8 and later, Aurora MySQL) allows 32 characters, MariaDB 80, MySQL
5.7.7 and older 16. Before connecting only the secret's ``engine`` is known, so a secret's user
may be as long as its engine allows
(:meth:`~rotation.adapters.mysql.MySQLAdapter.username_limit`: 80 for ``mariadb``, 32 for
``mysql`` and ``aurora-mysql``): a MariaDB server behind ``"engine": "mysql"`` (common) gets
MySQL's limit, and the error says to set the engine to ``mariadb``. Clone names (alternating
users) always fit 32, whatever the engine, so existing pairs keep their names: ``user +
"_clone"`` when that fits; otherwise the first 19 characters, ``_``, 6 hex digits of
SHA-256(user) and ``_clone``: 32 characters, stable, and distinct for long names sharing a
prefix. An original of up to 80 characters on MariaDB thus alternates with a 32-character clone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pymysql.converters

from rotation.errors import SecretFormatError

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
    """The account as SQL: `` `user`@`host` `` (no ``%`` doubling: see
    :class:`~rotation.adapters.mysql.server.Statement`)."""
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


__all__ = [
    "CLONE_SUFFIX",
    "ENGINE_USERNAME_LIMITS",
    "MARIADB_MAX_USERNAME_LENGTH",
    "MAX_USERNAME_LENGTH",
    "OLD_MAX_USERNAME_LENGTH",
    "Account",
    "account_sql",
    "check_username",
    "clone_username",
    "quote_identifier",
    "quote_string",
]
