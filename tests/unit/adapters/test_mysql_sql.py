"""MySQL / MariaDB adapter, without a server: statement building for every flavour and plugin,
quoting of hostile account names, client-side hashes, clone names, SHOW GRANTS rewriting, error
mapping, TLS settings, and the session's flows against a scripted fake connection."""

from __future__ import annotations

import base64
import socket
import ssl
import string
from collections.abc import Callable
from typing import Any

import pymysql
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from rotation.adapters.base import AdapterOptions, DatabaseSession
from rotation.adapters.mysql import (
    Account,
    AccountOptions,
    Greeting,
    MySQLAdapter,
    MySQLSession,
    ServerInfo,
    Statement,
    build_account_options,
    build_add_password,
    build_create_user,
    build_discard_old_password,
    build_set_password,
    clone_username,
    ed25519_password_hash,
    make_ssl_context,
    map_connect_error,
    map_statement_error,
    native_password_hash,
    parse_create_user,
    parse_grant,
    plan_add_password,
    plan_grant_additions,
    plan_grant_sync,
    rewrite_grants,
    split_account_options,
)
from rotation.adapters.mysql.grants import tokenize
from rotation.adapters.mysql.names import check_username, quote_identifier
from rotation.adapters.mysql.server import build_set_default_roles, stored_as
from rotation.credentials import DbCredentials, credentials_from_dict
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

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:test"
APP = Account("app", "%")
# Test vectors computed by MariaDB 10.11: SELECT PASSWORD(pw), and the authentication_string of
# CREATE USER ... IDENTIFIED VIA ed25519 USING PASSWORD(pw), over a utf8mb4 connection.
VECTORS = [
    ("password", "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19",
     "RBIiSdwSgBldhFZLFzRCTTc1Q0pRJ3pFZudlQ78k40o"),
    ("pässwörd", "*0225EC5004ABB0B8CB557541FE53DE1A5D8CC825",
     "3AcJUN7vR2AnAzs/McwNtGs2GDbHzL5YqZoIOPw62V0"),
    ("日本語パスワード", "*C08B35712482F5A37ED3F15CEC8CB9D05CD3764B",
     "zK/J0wdgujUVnYotFtml0lSgbuibnhVuVqUJINpEghM"),
    ("it's a \\ \"test\" %s", "*8EA4F476B463453EE0629961D06111A1018CAA59",
     "g3gDqD0dLUpCjaL/V57oCyO2jeW1CQg42yuJLIiyt68"),
    ("secret", "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7",
     "ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY"),
]
#: any character a name may hold (no NUL, no lone surrogate)
NAME_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
NATIVE_PASSWORD_HASH = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"  # of "password"
ED25519_PASSWORD_HASH = "RBIiSdwSgBldhFZLFzRCTTc1Q0pRJ3pFZudlQ78k40o"

MYSQL_56 = ServerInfo.parse("5.6.51-log", "MySQL Community Server (GPL)")
MYSQL_575 = ServerInfo.parse("5.7.5-m15")
MYSQL_57 = ServerInfo.parse("5.7.44-log", "MySQL Community Server (GPL)")
MYSQL_8013 = ServerInfo.parse("8.0.13")
MYSQL_8014 = ServerInfo.parse("8.0.14")
MYSQL_80 = ServerInfo.parse("8.0.36", "MySQL Community Server - GPL")
MYSQL_9 = ServerInfo.parse("9.1.0", "MySQL Community Server - GPL")
AURORA_2 = ServerInfo.parse("5.7.12", "Source distribution", aurora_version="2.11.2")
AURORA_3 = ServerInfo.parse("8.0.28", "Source distribution", aurora_version="3.04.0")
MARIADB_103 = ServerInfo.parse("5.5.5-10.3.39-MariaDB-0+deb10u1", "Debian 10")
MARIADB_1011 = ServerInfo.parse("10.11.19-MariaDB-0+deb12u1-log", "Debian 12")
MARIADB_114 = ServerInfo.parse("11.4.2-MariaDB", "MariaDB Server")
MARIADB_118 = ServerInfo.parse("11.8.1-MariaDB", "MariaDB Server")
MYSQL_SERVERS = [MYSQL_57, MYSQL_8013, MYSQL_8014, MYSQL_80, MYSQL_9, AURORA_2, AURORA_3]
MARIADB_SERVERS = [MARIADB_103, MARIADB_1011, MARIADB_114, MARIADB_118]
DUAL_SERVERS = [MYSQL_8014, MYSQL_80, MYSQL_9, AURORA_3]
NO_DUAL_SERVERS = [MYSQL_56, MYSQL_57, MYSQL_8013, AURORA_2, *MARIADB_SERVERS]


def ids(server: ServerInfo) -> str:
    return server.describe().replace(" ", "_")


def creds(**overrides: Any) -> DbCredentials:
    value = {"engine": "mysql", "host": "db.example.com", "port": 3306, "username": "app",
             "password": "Pw-4c1e9b7f-unit", **overrides}
    return credentials_from_dict(value, ARN)


# --------------------------------------------------------------------------------------------
# ServerInfo: flavour and features from VERSION() / @@version_comment / AURORA_VERSION()
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("version", "comment", "aurora", "flavour", "numbers", "dual", "alter_as"),
    [
        ("5.6.51-log", "MySQL Community Server (GPL)", None, "mysql", (5, 6, 51), False, False),
        ("5.7.5-m15", "", None, "mysql", (5, 7, 5), False, False),
        ("5.7.6", "", None, "mysql", (5, 7, 6), False, True),
        ("5.7.44-log", "MySQL Community Server (GPL)", None, "mysql", (5, 7, 44), False, True),
        ("8.0.13", "", None, "mysql", (8, 0, 13), False, True),
        ("8.0.14", "", None, "mysql", (8, 0, 14), True, True),
        ("8.0.36-0ubuntu0.22.04.1", "(Ubuntu)", None, "mysql", (8, 0, 36), True, True),
        ("8.4.3", "MySQL Community Server - GPL", None, "mysql", (8, 4, 3), True, True),
        ("9.1.0", "MySQL Community Server - GPL", None, "mysql", (9, 1, 0), True, True),
        ("8.0.35-27", "Percona Server (GPL), Release 27", None, "mysql", (8, 0, 35), True, True),
        ("5.7.12", "Source distribution", "2.11.2", "mysql", (5, 7, 12), False, True),
        ("8.0.28", "Source distribution", "3.04.0", "mysql", (8, 0, 28), True, True),
        # the RDS engine-version form, should a server ever report it: Aurora 3 is 8.0.23+
        ("8.0.mysql_aurora.3.04.0", "", None, "mysql", (8, 0, 23), True, True),
        ("10.11.19-MariaDB-0+deb12u1-log", "Debian 12", None, "mariadb", (10, 11, 19), False,
         False),
        ("5.5.5-10.3.39-MariaDB-0+deb10u1", "Debian 10", None, "mariadb", (10, 3, 39), False,
         False),
        ("11.4.2-MariaDB", "MariaDB Server", None, "mariadb", (11, 4, 2), False, False),
        ("10.6.16", "mariadb.org binary distribution", None, "mariadb", (10, 6, 16), False,
         False),
    ],
)
def test_server_info_is_read_from_what_the_server_says(
        version: str, comment: str, aurora: str | None, flavour: str,
        numbers: tuple[int, int, int], dual: bool, alter_as: bool) -> None:
    # GIVEN what a server answers to SELECT VERSION(), @@version_comment (and AURORA_VERSION())
    # WHEN it is parsed
    server = ServerInfo.parse(version, comment, aurora)
    # THEN flavour, version and features follow from it (not from a naive prefix check)
    assert server.flavour == flavour
    assert server.version == numbers
    assert server.supports_dual_passwords is dual
    assert server.has_alter_user_as is alter_as
    assert server.is_aurora is (aurora is not None or "aurora" in version)


@pytest.mark.parametrize(
    ("server", "limit"),
    [(MYSQL_56, 16), (MYSQL_575, 16), (ServerInfo.parse("5.7.8"), 32), (MYSQL_57, 32),
     (MYSQL_80, 32), (MYSQL_9, 32), (AURORA_2, 32), (AURORA_3, 32),
     (ServerInfo.parse("5.5.68-MariaDB"), 16), (MARIADB_103, 80), (MARIADB_1011, 80),
     (MARIADB_118, 80), (ServerInfo.parse("MariaDB"), 80), (ServerInfo.parse("odd"), 32)],
    ids=lambda v: v.version_string if isinstance(v, ServerInfo) else str(v),
)
def test_the_user_name_limit_is_the_servers(server: ServerInfo, limit: int) -> None:
    assert server.max_username_length == limit


def test_server_description_names_flavour_and_version() -> None:
    assert MARIADB_1011.describe() == "MariaDB 10.11.19"
    assert MYSQL_80.describe() == "MySQL 8.0.36"
    assert AURORA_3.describe() == "Aurora MySQL 3.04.0 (MySQL 8.0.28)"


# --------------------------------------------------------------------------------------------
# SET PASSWORD / ALTER USER, by flavour and plugin
# --------------------------------------------------------------------------------------------

NATIVE_MYSQL = ("ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS "
                f"'{NATIVE_PASSWORD_HASH}'")
SET_NATIVE = f"SET PASSWORD FOR `app`@`%` = '{NATIVE_PASSWORD_HASH}'"
ALTER_NATIVE_MARIADB = f"ALTER USER `app`@`%` IDENTIFIED BY PASSWORD '{NATIVE_PASSWORD_HASH}'"
BY_PLAINTEXT = "ALTER USER `app`@`%` IDENTIFIED BY 'password'"
SET_ED25519 = f"SET PASSWORD FOR `app`@`%` = '{ED25519_PASSWORD_HASH}'"
ALTER_ED25519 = f"ALTER USER `app`@`%` IDENTIFIED VIA ed25519 USING '{ED25519_PASSWORD_HASH}'"


@pytest.mark.parametrize(
    ("server", "plugin", "own", "expected", "plaintext"),
    [
        (MYSQL_56, "mysql_native_password", False, SET_NATIVE, False),
        (MYSQL_575, "mysql_native_password", True, SET_NATIVE, False),
        (MYSQL_57, "mysql_native_password", False, NATIVE_MYSQL, False),
        (MYSQL_57, "mysql_native_password", True, NATIVE_MYSQL, False),
        (MYSQL_57, "", False, NATIVE_MYSQL, False),  # an empty plugin column means native
        (MYSQL_57, "sha256_password", False, BY_PLAINTEXT, True),
        (MYSQL_8013, "mysql_native_password", False, NATIVE_MYSQL, False),
        (MYSQL_80, "mysql_native_password", True, NATIVE_MYSQL, False),
        (MYSQL_80, "caching_sha2_password", False, BY_PLAINTEXT, True),
        (MYSQL_80, "caching_sha2_password", True, BY_PLAINTEXT, True),
        (MYSQL_9, "caching_sha2_password", True, BY_PLAINTEXT, True),
        (AURORA_2, "mysql_native_password", False, NATIVE_MYSQL, False),
        (AURORA_3, "mysql_native_password", False, NATIVE_MYSQL, False),
        (AURORA_3, "caching_sha2_password", False, BY_PLAINTEXT, True),
        (MARIADB_103, "mysql_native_password", True, SET_NATIVE, False),
        (MARIADB_103, "mysql_native_password", False, ALTER_NATIVE_MARIADB, False),
        (MARIADB_103, "", True, SET_NATIVE, False),
        (MARIADB_103, "ed25519", True, ALTER_ED25519, False),  # no SET PASSWORD before 10.4
        (MARIADB_1011, "mysql_native_password", True, SET_NATIVE, False),
        (MARIADB_1011, "mysql_native_password", False, ALTER_NATIVE_MARIADB, False),
        (MARIADB_1011, "ed25519", True, SET_ED25519, False),
        (MARIADB_1011, "ed25519", False, ALTER_ED25519, False),
        (MARIADB_114, "mysql_native_password", False, ALTER_NATIVE_MARIADB, False),
        (MARIADB_118, "parsec", True, "SET PASSWORD FOR `app`@`%` = PASSWORD('password')", True),
        (MARIADB_118, "parsec", False,
         "ALTER USER `app`@`%` IDENTIFIED VIA parsec USING PASSWORD('password')", True),
    ],
    ids=lambda v: ids(v) if isinstance(v, ServerInfo) else None,
)
def test_set_password_statement_per_flavour_and_plugin(
        server: ServerInfo, plugin: str, own: bool, expected: str, plaintext: bool) -> None:
    # GIVEN an account using `plugin` on `server`, changed by itself (own) or by a master
    # WHEN the statement setting password "password" is built
    statement = build_set_password(server, APP, plugin, "password", own=own)
    # THEN it is the flavour's syntax, with a client-side hash wherever the plugin allows
    assert statement.render() == expected
    assert statement.carries_secret
    assert ("'password'" in statement.render()) is plaintext
    # ... the account's % is doubled because the secret travels as a query argument
    assert "`%%`" in statement.sql


@pytest.mark.parametrize(
    ("server", "retain", "expected"),
    [
        (MYSQL_80, False, BY_PLAINTEXT),
        (MYSQL_80, True, BY_PLAINTEXT + " RETAIN CURRENT PASSWORD"),
        (MYSQL_57, False, BY_PLAINTEXT),
        (MYSQL_56, False, "SET PASSWORD FOR `app`@`%` = PASSWORD('password')"),
    ],
)
def test_mysql_own_native_password_without_create_user(server: ServerInfo, retain: bool,
                                                       expected: str) -> None:
    # GIVEN a MySQL account without CREATE USER, which may change itself only with IDENTIFIED BY
    # WHEN the plaintext form is asked for
    statement = build_set_password(server, APP, "mysql_native_password", "password", own=True,
                                   hashed=False, retain_current=retain)
    # THEN it keeps the plugin (no WITH) and sends the password over TLS
    assert statement.render() == expected


@pytest.mark.parametrize("server", DUAL_SERVERS, ids=ids)
@pytest.mark.parametrize("plugin", ["mysql_native_password", "caching_sha2_password"])
def test_dual_password_retains_the_current_password(server: ServerInfo, plugin: str) -> None:
    # GIVEN MySQL 8.0.14+ (or Aurora MySQL 3)
    # WHEN a password is set with retain_current
    statement = build_set_password(server, APP, plugin, "password", retain_current=True)
    # THEN the statement keeps the old password as the secondary one
    assert statement.render().endswith(" RETAIN CURRENT PASSWORD")
    assert statement.render().startswith("ALTER USER `app`@`%` IDENTIFIED ")


@pytest.mark.parametrize("server", NO_DUAL_SERVERS, ids=ids)
def test_dual_password_elsewhere_is_a_clear_configuration_error(server: ServerInfo) -> None:
    # GIVEN a server without dual passwords (MariaDB, MySQL before 8.0.14)
    # WHEN a password is set, or the old one discarded, with dual passwords on
    builds: list[Callable[[], Statement]] = [
        lambda: build_set_password(server, APP, None, "password", retain_current=True),
        lambda: build_discard_old_password(server, APP),
    ]
    for build in builds:
        with pytest.raises(ConfigError) as info:
            build()
        # THEN the error says why and what to do instead
        assert "dual passwords" in str(info.value)
        assert "alternating-users" in str(info.value)
        if server.is_mariadb:
            assert "MariaDB has no dual passwords" in str(info.value)


def test_discard_old_password_statement() -> None:
    # GIVEN MySQL 8.0.14 WHEN the old password is discarded THEN no argument, so % stays single
    statement = build_discard_old_password(MYSQL_8014, APP)
    assert statement.sql == "ALTER USER `app`@`%` DISCARD OLD PASSWORD"
    assert statement.args == ()
    assert statement.render() == statement.sql


@pytest.mark.parametrize(
    ("server", "plugin", "current", "expected"),
    [
        (MARIADB_1011, "mysql_native_password", "ed25519", ALTER_NATIVE_MARIADB),
        (MARIADB_1011, "ed25519", "mysql_native_password",
         f"ALTER USER `app`@`%` IDENTIFIED VIA ed25519 USING '{ED25519_PASSWORD_HASH}'"),
        (MARIADB_118, "parsec", "mysql_native_password",
         "ALTER USER `app`@`%` IDENTIFIED VIA parsec USING PASSWORD('password')"),
        (MYSQL_80, "caching_sha2_password", "mysql_native_password",
         "ALTER USER `app`@`%` IDENTIFIED WITH caching_sha2_password BY 'password'"),
    ],
)
def test_set_password_switches_plugin_when_asked(server: ServerInfo, plugin: str, current: str,
                                                 expected: str) -> None:
    # GIVEN a clone whose plugin differs from its source's WHEN its password is set
    statement = build_set_password(server, APP, plugin, "password", current_plugin=current)
    # THEN the statement names the source's plugin
    assert statement.render() == expected


@pytest.mark.parametrize(
    ("server", "plugin", "expected"),
    [
        (MYSQL_56, "mysql_native_password",
         f"CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '{NATIVE_PASSWORD_HASH}'"),
        (MYSQL_80, "mysql_native_password",
         f"CREATE USER `app`@`%` IDENTIFIED WITH mysql_native_password AS "
         f"'{NATIVE_PASSWORD_HASH}'"),
        (MYSQL_80, "caching_sha2_password",
         "CREATE USER `app`@`%` IDENTIFIED WITH caching_sha2_password BY 'password'"),
        (MARIADB_1011, "mysql_native_password",
         f"CREATE USER `app`@`%` IDENTIFIED BY PASSWORD '{NATIVE_PASSWORD_HASH}'"),
        (MARIADB_1011, "ed25519",
         f"CREATE USER `app`@`%` IDENTIFIED VIA ed25519 USING '{ED25519_PASSWORD_HASH}'"),
        (MARIADB_118, "parsec",
         "CREATE USER `app`@`%` IDENTIFIED VIA parsec USING PASSWORD('password')"),
    ],
)
def test_create_user_statement(server: ServerInfo, plugin: str, expected: str) -> None:
    assert build_create_user(server, APP, plugin, "password").render() == expected


@pytest.mark.parametrize(
    ("server", "plugin"),
    [
        (MYSQL_80, "auth_socket"),
        (MYSQL_80, "AWSAuthenticationPlugin"),
        (MYSQL_80, "mysql_no_login"),
        (MYSQL_80, "authentication_ldap_sasl"),
        (MYSQL_80, "ed25519"),
        (MYSQL_80, "parsec"),
        (MARIADB_1011, "unix_socket"),
        (MARIADB_1011, "pam"),
        (MARIADB_1011, "gssapi"),
        (MARIADB_1011, "mysql_old_password"),
        (MARIADB_1011, "caching_sha2_password"),
        (MARIADB_1011, "x'; DROP USER root; --"),
    ],
)
def test_accounts_without_a_rotatable_password_are_refused(server: ServerInfo,
                                                           plugin: str) -> None:
    # GIVEN an account authenticated by a plugin without a stored password
    # WHEN its password would be set or a clone created
    for build in (build_set_password, build_create_user):
        with pytest.raises(DatabaseError) as info:
            build(server, APP, plugin, "Pw-never-shown-1")
        # THEN the error names the plugin and the account, and no statement is built
        assert repr(plugin) in str(info.value)
        assert "'app'@'%'" in str(info.value)
        assert "Pw-never-shown-1" not in str(info.value)


def test_an_empty_password_is_refused() -> None:
    for build in (build_set_password, build_create_user):
        with pytest.raises(SecretFormatError):
            build(MYSQL_80, APP, None, "")


def test_statement_repr_hides_its_arguments() -> None:
    statement = build_set_password(MYSQL_80, APP, "caching_sha2_password", "Pw-hidden-7d1f")
    assert "Pw-hidden-7d1f" not in repr(statement)
    assert "Pw-hidden-7d1f" not in statement.sql
    assert statement.args == ("Pw-hidden-7d1f",)


@given(st.text(min_size=1, max_size=64))
@settings(max_examples=200, deadline=None)
def test_client_hashed_plugins_never_carry_the_plaintext(password: str) -> None:
    # GIVEN any password WHEN a statement for a client-hashed plugin is built
    for server, plugin in ((MYSQL_80, "mysql_native_password"),
                           (MARIADB_1011, "mysql_native_password"),
                           (MARIADB_1011, "ed25519"), (MARIADB_103, "ed25519")):
        statement = build_set_password(server, APP, plugin, password)
        # THEN the only argument is the hash, never the password itself
        assert statement.args in ((native_password_hash(password),),
                                  (ed25519_password_hash(password),))


# --------------------------------------------------------------------------------------------
# Hostile account names
# --------------------------------------------------------------------------------------------

HOSTILE_NAMES = [
    "o'brien",
    'say "hi"',
    "back\\slash",
    "\\'; DROP USER root; --",
    "back`tick`",
    "`",
    "per%cent_under",
    "%s %% %(x)s",
    "semi;colon",
    "{0}{1}",
    "a@b@c",
    "ünïcødé ユーザー",
    " padded ",
    "new\nline\ttab\r\x1a",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("server", [MYSQL_80, MARIADB_1011], ids=ids)
@pytest.mark.parametrize("no_backslash_escapes", [False, True])
def test_hostile_account_names_stay_one_quoted_name(name: str, server: ServerInfo,
                                                    no_backslash_escapes: bool) -> None:
    # GIVEN an account whose user and host parts are hostile
    account = Account(name, name)
    # WHEN statements for it are built and rendered (under either backslash mode)
    statements = [build_set_password(server, account, None, "password"),
                  build_set_password(server, account, None, "password", own=True),
                  build_create_user(server, account, None, "password"),
                  Statement.build("SHOW GRANTS FOR {0}", [account], action="read")]
    if server.supports_dual_passwords:
        statements.append(build_discard_old_password(server, account))
    for statement in statements:
        text = statement.render(no_backslash_escapes=no_backslash_escapes)
        tokens = [t for t in tokenize(text) if t.kind != "ws"]
        # THEN the account is exactly one `user`@`host` triple that reads back as the name...
        triples = [i for i in range(len(tokens) - 2) if tokens[i].kind == "ident"
                   and tokens[i + 1].text == "@" and tokens[i + 2].kind == "ident"]
        assert len(triples) == 1
        i = triples[0]
        assert Account(tokens[i].value, tokens[i + 2].value) == account
        # ... and nothing else in the statement comes from the name
        assert all(t.kind != "ident" for t in tokens[:i] + tokens[i + 3:])


@given(user=st.text(NAME_CHARS,
                    min_size=1, max_size=40),
       host=st.text(NAME_CHARS,
                    min_size=0, max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_account_name_round_trips_through_quoting(user: str, host: str) -> None:
    # GIVEN any user and host without NUL
    account = Account(user, host)
    # WHEN a SET PASSWORD is built for MariaDB and rendered
    text = build_set_password(MARIADB_1011, account, None, "password", own=True).render()
    tokens = [t for t in tokenize(text) if t.kind != "ws"]
    # THEN it has exactly the expected shape, and the account reads back unchanged
    assert [t.text for t in tokens[:3]] == ["SET", "PASSWORD", "FOR"]
    assert [t.kind for t in tokens[3:]] == ["ident", "punct", "ident", "punct", "string"]
    assert Account(tokens[3].value, tokens[5].value) == account


@pytest.mark.parametrize("name", ["nul\x00byte", "\x00"])
def test_nul_in_a_name_is_refused(name: str) -> None:
    with pytest.raises(SecretFormatError):
        check_username(name)
    with pytest.raises(SecretFormatError):
        quote_identifier(name)
    with pytest.raises(SecretFormatError):
        build_set_password(MYSQL_80, Account(name, "%"), None, "password")


@pytest.mark.parametrize("name", ["", "\udc80lone-surrogate"])
def test_empty_or_unencodable_names_are_refused(name: str) -> None:
    with pytest.raises(SecretFormatError):
        check_username(name)


# --------------------------------------------------------------------------------------------
# Client-side hashes
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("password", "native", "ed25519"), VECTORS)
def test_hashes_match_what_mariadb_computes(password: str, native: str, ed25519: str) -> None:
    # GIVEN a password and the hashes MariaDB 10.11 computed for it
    # WHEN the adapter hashes it THEN the results are identical
    assert native_password_hash(password) == native
    assert ed25519_password_hash(password) == ed25519


def test_ed25519_hash_of_the_empty_password_matches_mariadbs_udf() -> None:
    # GIVEN ed25519_password("") as printed by MariaDB's own test suite
    assert ed25519_password_hash("") == "4LH+dBF+G5W2CKTyId8xR3SyDqZoQjUNUVNxx8aWbG4"


@given(st.text(alphabet=string.ascii_letters + string.digits + string.punctuation,
               min_size=32, max_size=32))
@settings(max_examples=50, deadline=None)
def test_ed25519_hash_is_rfc8032_public_key_for_32_byte_passwords(password: str) -> None:
    # GIVEN a 32-byte password, which MariaDB's scheme uses exactly like an RFC 8032 seed
    key = Ed25519PrivateKey.from_private_bytes(password.encode())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    # WHEN the adapter hashes it THEN it is the seed's public key, base64 without padding
    assert ed25519_password_hash(password) == base64.b64encode(public).decode().rstrip("=")


# --------------------------------------------------------------------------------------------
# Clone names
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("username", "expected"),
    [
        ("app", "app_clone"),
        ("a" * 26, "a" * 26 + "_clone"),  # exactly 32
        ("ünï", "ünï_clone"),
    ],
)
def test_short_names_get_the_clone_suffix(username: str, expected: str) -> None:
    assert clone_username(username) == expected
    assert MySQLAdapter(AdapterOptions()).clone_username(username) == expected


def test_long_names_are_shortened_with_a_digest() -> None:
    # GIVEN two 40-character names that share their first 30 characters
    first, second = "x" * 30 + "aaaaaaaaaa", "x" * 30 + "bbbbbbbbbb"
    # WHEN their clone names are made
    one, two = clone_username(first), clone_username(second)
    # THEN both fit MySQL's 32 characters, end with _clone, and differ
    assert len(one) == len(two) == 32
    assert one.endswith("_clone")
    assert two.endswith("_clone")
    assert one.startswith("x" * 19 + "_")
    assert one != two


@given(st.text(NAME_CHARS,
               min_size=1, max_size=80),
       st.integers(min_value=14, max_value=80))
@settings(max_examples=300, deadline=None)
def test_clone_name_rule(username: str, limit: int) -> None:
    # GIVEN any user name and limit WHEN the clone name is made
    name = clone_username(username, limit)
    # THEN it fits, ends with _clone, is deterministic, and is the plain suffix when that fits
    assert len(name) <= limit
    assert name.endswith("_clone")
    assert name == clone_username(username, limit)
    if len(username) + 6 <= limit:
        assert name == username + "_clone"
    else:
        assert name.startswith(username[:limit - 13])


def test_adapter_class_attributes() -> None:
    assert MySQLAdapter.family == "mysql"
    assert MySQLAdapter.max_username_length == 32


@pytest.mark.parametrize(
    ("engine", "limit"),
    [("mariadb", 80), ("mysql", 32), ("aurora-mysql", 32), ("some-plugin-name", 32)],
)
@pytest.mark.parametrize("strategy", ["single-user", "alternating-users"])
def test_username_limit_is_per_engine(engine: str, limit: int, strategy: str) -> None:
    # GIVEN the engine named by a secret WHEN its limit is asked for THEN MariaDB's 80 is
    # MariaDB's alone, under every strategy (clone names fit 32 anyway)
    assert MySQLAdapter(AdapterOptions()).username_limit(engine, strategy) == limit


def test_an_80_character_mariadb_original_gets_a_32_character_clone() -> None:
    name = "m" * 80
    clone = MySQLAdapter(AdapterOptions()).clone_username(name)
    assert len(clone) == 32
    assert clone == clone_username(name, 32)  # today's rule: existing pairs keep their names


# --------------------------------------------------------------------------------------------
# SHOW GRANTS rewriting
# --------------------------------------------------------------------------------------------

# MariaDB 10.11, captured from a real server (with quotes and backslashes in names).
MARIADB_GRANTS = [
    "GRANT `r1` TO `o'brien\\\\x`@`10.0.%` WITH ADMIN OPTION",
    "GRANT USAGE ON *.* TO `o'brien\\\\x`@`10.0.%` IDENTIFIED VIA ed25519 USING "
    "'lEiAPNNMP1kq0dRsguIBKo/em5EPb9Y0272TblVhRUw' OR unix_socket REQUIRE SSL WITH "
    "MAX_USER_CONNECTIONS 5",
    "GRANT ALL PRIVILEGES ON `we'ird``db`.* TO `o'brien\\\\x`@`10.0.%` WITH GRANT OPTION",
    "GRANT SELECT (`co'l`), INSERT ON `we'ird``db`.`t``1` TO `o'brien\\\\x`@`10.0.%`",
    "GRANT EXECUTE ON PROCEDURE `we'ird``db`.`p1` TO `o'brien\\\\x`@`10.0.%`",
    "GRANT PROXY ON ``@`%` TO `o'brien\\\\x`@`10.0.%`",
    "SET DEFAULT ROLE `r1` FOR `o'brien\\\\x`@`10.0.%`",
]
MARIADB_SOURCE = Account("o'brien\\\\x", "10.0.%")
CLONE = Account("o'brien_clone", "10.0.%")
CLONE_SQL = "`o'brien_clone`@`10.0.%`"


def test_mariadb_grants_are_rewritten_to_the_clone() -> None:
    # GIVEN SHOW GRANTS of a MariaDB 10.11 account with hostile names everywhere
    # WHEN they are rewritten for the clone
    lines = rewrite_grants(MARIADB_GRANTS, MARIADB_SOURCE, CLONE)
    # THEN only the grantee changed, the password clause is gone, and the order is
    # grants first, default role last
    assert lines == [
        f"GRANT `r1` TO {CLONE_SQL} WITH ADMIN OPTION",
        f"GRANT USAGE ON *.* TO {CLONE_SQL} REQUIRE SSL WITH MAX_USER_CONNECTIONS 5",
        f"GRANT ALL PRIVILEGES ON `we'ird``db`.* TO {CLONE_SQL} WITH GRANT OPTION",
        f"GRANT SELECT (`co'l`), INSERT ON `we'ird``db`.`t``1` TO {CLONE_SQL}",
        f"GRANT EXECUTE ON PROCEDURE `we'ird``db`.`p1` TO {CLONE_SQL}",
        f"GRANT PROXY ON ``@`%` TO {CLONE_SQL}",
        f"SET DEFAULT ROLE `r1` FOR {CLONE_SQL}",
    ]
    assert not any("lEiAPNNMP1kq0dRsguIBKo" in line for line in lines)


MYSQL8_SOURCE = Account("app", "%")
MYSQL8_GRANTS = [
    "GRANT USAGE ON *.* TO `app`@`%`",
    "GRANT SELECT, INSERT, UPDATE ON `shop`.* TO `app`@`%`",
    "GRANT APPLICATION_PASSWORD_ADMIN,BACKUP_ADMIN ON *.* TO `app`@`%` WITH GRANT OPTION",
    "GRANT SELECT (`id`, `na``me`) ON `shop`.`orders` TO `app`@`%`",
    "GRANT EXECUTE ON PROCEDURE `shop`.`p TO x` TO `app`@`%`",
    "REVOKE INSERT ON `mysql`.* FROM `app`@`%`",
    "GRANT PROXY ON ``@`` TO `app`@`%`",
    "GRANT `reader`@`%`,`writer`@`%` TO `app`@`%`",
    "GRANT `admin TO app`@`%` TO `app`@`%` WITH ADMIN OPTION",
]


def test_mysql8_grants_are_rewritten_to_the_clone() -> None:
    # GIVEN MySQL 8 SHOW GRANTS output: dynamic privileges, partial revokes, roles, and object
    # names that contain " TO " themselves
    # WHEN they are rewritten for app_clone
    lines = rewrite_grants(MYSQL8_GRANTS, MYSQL8_SOURCE, Account("app_clone", "%"))
    # THEN the grantee of every line (and nothing else) is the clone; REVOKEs come after GRANTs
    target = "`app_clone`@`%`"
    assert lines == [
        f"GRANT USAGE ON *.* TO {target}",
        f"GRANT SELECT, INSERT, UPDATE ON `shop`.* TO {target}",
        f"GRANT APPLICATION_PASSWORD_ADMIN,BACKUP_ADMIN ON *.* TO {target} WITH GRANT OPTION",
        f"GRANT SELECT (`id`, `na``me`) ON `shop`.`orders` TO {target}",
        f"GRANT EXECUTE ON PROCEDURE `shop`.`p TO x` TO {target}",
        f"GRANT PROXY ON ``@`` TO {target}",
        f"GRANT `reader`@`%`,`writer`@`%` TO {target}",
        f"GRANT `admin TO app`@`%` TO {target} WITH ADMIN OPTION",
        f"REVOKE INSERT ON `mysql`.* FROM {target}",
    ]


@pytest.mark.parametrize(
    ("line", "grantee", "expected"),
    [
        # MySQL 5.7 quotes with single quotes
        ("GRANT SELECT ON `shop`.* TO 'app'@'%'", Account("app", "%"),
         "GRANT SELECT ON `shop`.* TO `c`@`%`"),
        ("GRANT USAGE ON *.* TO 'o\\'brien'@'localhost'", Account("o'brien", "localhost"),
         "GRANT USAGE ON *.* TO `c`@`localhost`"),
        ("GRANT USAGE ON *.* TO 'o''brien'@'localhost'", Account("o'brien", "localhost"),
         "GRANT USAGE ON *.* TO `c`@`localhost`"),
        # MySQL 5.6 prints the hash; it must not be replayed onto the clone
        (f"GRANT USAGE ON *.* TO 'app'@'%' IDENTIFIED BY PASSWORD '{NATIVE_PASSWORD_HASH}'",
         Account("app", "%"), "GRANT USAGE ON *.* TO `c`@`%`"),
        ("GRANT USAGE ON *.* TO 'app'@'%' IDENTIFIED WITH 'sha256_password' AS 'x' "
         "WITH GRANT OPTION", Account("app", "%"),
         "GRANT USAGE ON *.* TO `c`@`%` WITH GRANT OPTION"),
        # host names compare case-insensitively, as the server does
        ("GRANT SELECT ON *.* TO `app`@`DB.Example.com`", Account("app", "db.example.com"),
         "GRANT SELECT ON *.* TO `c`@`db.example.com`"),
    ],
)
def test_older_grant_formats(line: str, grantee: Account, expected: str) -> None:
    target = Account("c", grantee.host)
    assert rewrite_grants([line], grantee, target) == [expected]


def test_a_grant_for_someone_else_is_refused() -> None:
    # GIVEN output whose grantee is not the source (a bug, or a parse gone wrong)
    with pytest.raises(DatabaseError) as info:
        rewrite_grants(["GRANT SELECT ON *.* TO `other`@`%`"], APP, Account("app_clone", "%"))
    # THEN nothing is replayed
    assert "'other'@'%'" in str(info.value)


@pytest.mark.parametrize("line", [
    "GRANT SELECT ON *.* TO `app",
    "GRANT SELECT ON *.*",
    "CREATE USER `app`@`%`",
    "",
    "GRANT SELECT ON *.* TO `app`",
])
def test_unreadable_grant_lines_are_refused(line: str) -> None:
    with pytest.raises(DatabaseError):
        parse_grant(line)


def test_mariadb_default_role_of_a_revoked_role_is_dropped() -> None:
    # GIVEN MariaDB, which keeps SET DEFAULT ROLE after the role itself was revoked
    lines = ["GRANT USAGE ON *.* TO `app`@`%`", "SET DEFAULT ROLE `gone` FOR `app`@`%`"]
    # WHEN rewritten THEN the stale default role is not replayed (it would fail)
    assert rewrite_grants(lines, APP, Account("c", "%")) == ["GRANT USAGE ON *.* TO `c`@`%`"]


def test_grant_sync_is_a_no_op_when_grants_match() -> None:
    desired = rewrite_grants(MYSQL8_GRANTS, APP, Account("c", "%"))
    assert plan_grant_sync(desired, list(reversed(desired)), Account("c", "%")) == []


def test_grant_sync_revokes_then_replays() -> None:
    # GIVEN a clone with a role, a proxy grant and a default role the source no longer has
    target = Account("c", "%")
    desired = ["GRANT USAGE ON *.* TO `c`@`%`", "GRANT SELECT ON `shop`.* TO `c`@`%`"]
    current = ["GRANT `old_role` TO `c`@`%` WITH ADMIN OPTION", "GRANT USAGE ON *.* TO `c`@`%`",
               "GRANT SELECT, DELETE ON `shop`.* TO `c`@`%`",
               "GRANT PROXY ON ``@`%` TO `c`@`%` WITH GRANT OPTION",
               "SET DEFAULT ROLE `old_role` FOR `c`@`%`"]
    # WHEN the sync is planned
    plan = [s.sql for s in plan_grant_sync(desired, current, target)]
    # THEN what REVOKE ALL does not reach goes first, then REVOKE ALL, then the replay
    assert plan == [
        "REVOKE `old_role` FROM `c`@`%`",
        "REVOKE PROXY ON ``@`%` FROM `c`@`%`",
        "SET DEFAULT ROLE NONE FOR `c`@`%`",
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM `c`@`%`",
        "GRANT USAGE ON *.* TO `c`@`%`",
        "GRANT SELECT ON `shop`.* TO `c`@`%`",
    ]


def test_grant_sync_does_not_set_a_default_role_mariadb_kept() -> None:
    # GIVEN MariaDB, which keeps a default role through REVOKE ALL, and a clone whose default
    # role is right but that holds a grant too many
    target = Account("c", "%")
    desired = ["GRANT `r` TO `c`@`%`", "GRANT USAGE ON *.* TO `c`@`%`",
               "SET DEFAULT ROLE `r` FOR `c`@`%`"]
    current = [*desired, "GRANT SELECT ON `shop`.* TO `c`@`%`"]
    # WHEN the sync is planned
    plan = [s.sql for s in plan_grant_sync(desired, current, target)]
    # THEN the role is granted again, but SET DEFAULT ROLE (UPDATE on mysql.*) is not run
    assert plan == ["REVOKE ALL PRIVILEGES, GRANT OPTION FROM `c`@`%`",
                    "GRANT `r` TO `c`@`%`", "GRANT USAGE ON *.* TO `c`@`%`"]


def test_grant_additions_come_first_and_take_nothing_away() -> None:
    # GIVEN a clone lacking a grant, a role and a default role, and holding one too many
    target = Account("c", "%")
    desired = ["GRANT `r` TO `c`@`%`", "GRANT USAGE ON *.* TO `c`@`%`",
               "GRANT SELECT ON `shop`.* TO `c`@`%`", "SET DEFAULT ROLE `r` FOR `c`@`%`"]
    current = ["GRANT USAGE ON *.* TO `c`@`%`", "GRANT DELETE ON `shop`.* TO `c`@`%`"]
    # WHEN the additions are planned
    plan = plan_grant_additions(desired, current, target)
    # THEN they are the missing lines only, in order, with nothing revoked, and each names
    # what it grants (for the error when the master may not)
    assert [s.sql for s in plan] == ["GRANT `r` TO `c`@`%`", "GRANT SELECT ON `shop`.* TO `c`@`%`",
                                     "SET DEFAULT ROLE `r` FOR `c`@`%`"]
    assert plan[1].action == "copy 'GRANT SELECT ON `shop`.*' to 'c'@'%'"
    assert not any("REVOKE" in s.sql for s in plan)


MARIADB_OPTION_LINES = [
    "GRANT USAGE ON *.* TO `c`@`%` REQUIRE SSL WITH GRANT OPTION MAX_QUERIES_PER_HOUR 10 "
    "MAX_STATEMENT_TIME 2.500000",
    "GRANT SELECT ON `shop`.* TO `c`@`%`",
]


@pytest.mark.parametrize(
    ("lines", "kept", "options"),
    [
        (MARIADB_OPTION_LINES,
         ["GRANT USAGE ON *.* TO `c`@`%` WITH GRANT OPTION", "GRANT SELECT ON `shop`.* TO `c`@`%`"],
         AccountOptions((("SSL", ""),), (("MAX_QUERIES_PER_HOUR", "10"),
                                         ("MAX_STATEMENT_TIME", "2.500000")))),
        (["GRANT USAGE ON *.* TO `c`@`%` REQUIRE ISSUER '/C=x/O=it''s' SUBJECT '/CN=a\\\\b' "
          "CIPHER 'EDH-RSA-DES-CBC3-SHA' WITH MAX_USER_CONNECTIONS -1"],
         ["GRANT USAGE ON *.* TO `c`@`%`"],
         AccountOptions((("ISSUER", "/C=x/O=it's"), ("SUBJECT", "/CN=a\\b"),
                         ("CIPHER", "EDH-RSA-DES-CBC3-SHA")), (("MAX_USER_CONNECTIONS", "-1"),))),
        (["GRANT USAGE ON *.* TO `c`@`%` REQUIRE NONE WITH MAX_QUERIES_PER_HOUR 0"],
         ["GRANT USAGE ON *.* TO `c`@`%`"], AccountOptions()),
        (["GRANT `r` TO `c`@`%` WITH ADMIN OPTION", "GRANT ALL PRIVILEGES ON `shop`.* TO `c`@`%` "
          "WITH GRANT OPTION"],
         ["GRANT `r` TO `c`@`%` WITH ADMIN OPTION", "GRANT ALL PRIVILEGES ON `shop`.* TO `c`@`%` "
          "WITH GRANT OPTION"], AccountOptions()),
        # a clause this does not know: the line is replayed whole, as before
        (["GRANT USAGE ON *.* TO `c`@`%` REQUIRE SSL WITH SOMETHING_NEW 3"],
         ["GRANT USAGE ON *.* TO `c`@`%` REQUIRE SSL WITH SOMETHING_NEW 3"], AccountOptions()),
    ],
)
def test_account_options_are_split_from_the_grants(lines: list[str], kept: list[str],
                                                   options: AccountOptions) -> None:
    assert split_account_options(lines) == (kept, options)


def test_account_options_are_set_with_alter_user() -> None:
    # GIVEN the options of a source (hostile DN strings included)
    target = Account("c%", "%")
    options = AccountOptions((("ISSUER", "/O=it's"), ("SUBJECT", "/CN=x\\y")),
                             (("MAX_QUERIES_PER_HOUR", "10"),))
    # WHEN the statement is built THEN it is ALTER USER (CREATE USER suffices, where GRANT ...
    # REQUIRE needs UPDATE on mysql.*), every limit is written, and the strings are arguments
    statement = build_account_options(MARIADB_1011, target, options)
    assert statement.render() == (
        "ALTER USER `c%`@`%` REQUIRE ISSUER '/O=it\\'s' AND SUBJECT '/CN=x\\\\y' WITH "
        "MAX_QUERIES_PER_HOUR 10 MAX_UPDATES_PER_HOUR 0 MAX_CONNECTIONS_PER_HOUR 0 "
        "MAX_USER_CONNECTIONS 0 MAX_STATEMENT_TIME 0")
    assert statement.sql.startswith("ALTER USER `c%%`@`%%` REQUIRE ISSUER %s AND SUBJECT %s")
    # ... and none at all resets them (the source dropped its options)
    assert build_account_options(MYSQL_80, Account("c", "%"), AccountOptions()).sql == (
        "ALTER USER `c`@`%` REQUIRE NONE WITH MAX_QUERIES_PER_HOUR 0 MAX_UPDATES_PER_HOUR 0 "
        "MAX_CONNECTIONS_PER_HOUR 0 MAX_USER_CONNECTIONS 0")


def test_default_roles_statement() -> None:
    target = Account("c", "%")
    assert build_set_default_roles(target, []).sql == "SET DEFAULT ROLE NONE TO `c`@`%`"
    assert build_set_default_roles(target, [Account("r1", "%"), Account("r`2", "h")]).sql == \
        "SET DEFAULT ROLE `r1`@`%`, `r``2`@`h` TO `c`@`%`"


@pytest.mark.parametrize(
    ("text", "plugin", "auth"),
    [
        ("CREATE USER `app`@`%` IDENTIFIED WITH 'caching_sha2_password' AS "
         "'$A$005$abcdefghij0123456789XYZ' REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK "
         "PASSWORD HISTORY DEFAULT PASSWORD REUSE INTERVAL DEFAULT PASSWORD REQUIRE CURRENT "
         "DEFAULT", "caching_sha2_password", None),
        ("CREATE USER `app`@`%` IDENTIFIED WITH 'caching_sha2_password' AS "
         "0x244124303035240A REQUIRE NONE", "caching_sha2_password", None),
        (f"CREATE USER 'app'@'%' IDENTIFIED WITH 'mysql_native_password' AS "
         f"'{NATIVE_PASSWORD_HASH}' REQUIRE NONE PASSWORD EXPIRE DEFAULT ACCOUNT UNLOCK",
         "mysql_native_password", NATIVE_PASSWORD_HASH),
        ("CREATE USER `app`@`%` IDENTIFIED WITH 'sha256_password' REQUIRE NONE",
         "sha256_password", None),
        (f"CREATE USER `lowly`@`%` IDENTIFIED BY PASSWORD '{NATIVE_PASSWORD_HASH}'",
         "mysql_native_password", NATIVE_PASSWORD_HASH),
        ("CREATE USER `ed2`@`%` IDENTIFIED VIA ed25519 USING "
         "'4LH+dBF+G5W2CKTyId8xR3SyDqZoQjUNUVNxx8aWbG4'", "ed25519", None),
        (f"CREATE USER `ch`@`%` IDENTIFIED VIA mysql_native_password USING "
         f"'{NATIVE_PASSWORD_HASH}' OR unix_socket", "mysql_native_password",
         NATIVE_PASSWORD_HASH),
        ("CREATE USER `nopass`@`%`", "mysql_native_password", ""),
    ],
)
def test_show_create_user_gives_the_plugin(text: str, plugin: str, auth: str | None) -> None:
    assert parse_create_user(text) == (plugin, auth)


# --------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------

SECRET = "Pw-9f8e7d6c-never-in-errors"


def op_error(errno: int, message: str, original: BaseException | None = None) -> Exception:
    exc: Exception = pymysql.err.OperationalError(errno, message)
    if original is not None:
        exc.original_exception = original  # type: ignore[attr-defined]  # as PyMySQL does
    return exc


def cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                          "failed: self-signed certificate in certificate chain")
    exc.verify_message = "self-signed certificate in certificate chain"
    return exc


@pytest.mark.parametrize(
    ("exc", "sslmode", "error_class", "words"),
    [
        (op_error(1045, "Access denied for user 'app'@'10.0.0.9' (using password: YES)"),
         "verify-full", PasswordRefusedError, ["access denied", "'app'", "db.example.com:3306"]),
        (op_error(1045, "Access denied for user 'app'@'10.0.0.9' (using password: YES)"),
         "disable", LoginError, ["unencrypted", "TLS", "require_secure_transport"]),
        (op_error(1698, "Access denied for user 'app'@'localhost'"), "verify-full", LoginError,
         ["access denied"]),
        (op_error(3159, "Connections using insecure transport are prohibited while "
                        "--require_secure_transport=ON."), "disable", TlsError,
         ["unencrypted", "sslmode"]),
        (op_error(2026, "SSL is required but the server doesn't support it"), "verify-full",
         TlsError, ["does not offer TLS", "ROTATION_CA_BUNDLE"]),
        (op_error(2003, "Can't connect to MySQL server on 'db' ([SSL: CERTIFICATE_VERIFY_FAILED]"
                        " certificate verify failed)", cert_error()), "verify-full", TlsError,
         ["self-signed certificate", "ROTATION_CA_BUNDLE", "sslmode"]),
        (op_error(2003, "Can't connect ([SSL] wrong version number)",
                  ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")),
         "verify-full", TlsError, ["handshake"]),
        (op_error(2003, "Can't connect to MySQL server on 'db' (timed out)",
                  TimeoutError("timed out")), "verify-full", DbTimeoutError,
         ["no answer", "within 5s", "security groups"]),
        (op_error(2003, "Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)",
                  ConnectionRefusedError(111, "Connection refused")), "verify-full",
         ConnectError, ["refused", "security groups"]),
        (op_error(2003, "Can't connect ([Errno -2] Name or service not known)",
                  socket.gaierror(-2, "Name or service not known")), "verify-full",
         ConnectError, ["does not resolve", "'db.example.com'"]),
        (op_error(2013, "Lost connection to MySQL server during query (timed out)"),
         "verify-full", DbTimeoutError, ["no answer"]),
        (op_error(2013, "Lost connection to MySQL server during query ([Errno 104] Connection "
                        "reset by peer)"), "verify-full", ConnectError, ["lost the connection"]),
        (op_error(1044, "Access denied for user 'app'@'%' to database 'shop'"), "verify-full",
         PrivilegeError, ["'shop'", "dbname"]),
        (op_error(1049, "Unknown database 'shop'"), "verify-full", DatabaseError, ["'shop'"]),
        (op_error(1130, "Host '10.0.0.9' is not allowed to connect"), "verify-full", LoginError,
         ["may not connect"]),
        (op_error(3118, "Access denied for user 'app'@'%'. Account is locked."), "verify-full",
         LoginError, ["locked"]),
        (op_error(4151, "Access denied, this account is locked"), "verify-full", LoginError,
         ["locked"]),
        (op_error(1862, "Your password has expired."), "verify-full", LoginError, ["expired"]),
        (op_error(4150, "User is blocked because of too many credential errors; unblock with "
                        "'ALTER USER / FLUSH PRIVILEGES'"), "verify-full", LoginError,
         ["blocked after too many failed logins", "ACCOUNT UNLOCK"]),
        (op_error(3955, "Access denied for user 'app'@'%'. Account is blocked for 1 day(s) (1 "
                        "day(s) remaining) due to 3 consecutive failed logins."), "verify-full",
         LoginError, ["blocked after too many failed logins"]),
        (op_error(1226, "User 'app' has exceeded the 'max_user_connections' resource (current "
                        "value: 1)"), "verify-full", ConnectError,
         ["resource limit", "MAX_USER_CONNECTIONS"]),
        (op_error(1129, "Host '10.0.0.9' is blocked because of many connection errors"),
         "verify-full", ConnectError, ["FLUSH HOSTS"]),
        (op_error(3032, "The server is currently in offline mode"), "verify-full", ConnectError,
         ["offline mode"]),
        (op_error(1040, "Too many connections"), "verify-full", ConnectError,
         ["Too many connections", "max_connections"]),
        (RuntimeError("'pynacl' package is required for ed25519_password auth method"),
         "verify-full", LoginError, ["PyNaCl"]),
        (op_error(9999, "something new"), "verify-full", DatabaseError, ["something new"]),
    ],
)
def test_login_errors_map_to_the_framework_classes(exc: Exception, sslmode: str,
                                                   error_class: type[DatabaseError],
                                                   words: list[str]) -> None:
    # GIVEN a driver error raised while logging in
    credentials = creds(password=SECRET, dbname="shop", sslmode=sslmode)
    # WHEN it is mapped
    error = map_connect_error(exc, credentials, AdapterOptions())
    # THEN the class tells the kind of fix, the message names host/port/user, never the password
    assert type(error) is error_class
    for word in words:
        assert word in str(error)
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert error.driver_error == type(exc).__name__
    if isinstance(exc, pymysql.err.Error):
        assert error.sqlstate == str(exc.args[0])


MARIADB_GREETING = Greeting("5.5.5-10.11.19-MariaDB-0+deb12u1-log", offers_tls=True)
MYSQL_GREETING = Greeting("8.0.36", offers_tls=True)
PLAIN_GREETING = Greeting("8.0.36", offers_tls=False)
DENIED = "Access denied for user 'app'@'10.0.0.9' (using password: YES)"


@pytest.mark.parametrize(
    ("errno", "sslmode", "greeting", "refused", "words"),
    [
        # the server said the password (or user) is wrong: another version's may work
        (1045, "verify-full", MARIADB_GREETING, True, ["wrong password or user name", "X509"]),
        (1045, "verify-full", MYSQL_GREETING, True, ["wrong password"]),
        (1045, "require", None, True, ["wrong password"]),
        # plaintext to a server that offers TLS: require_secure_transport (MariaDB < 11.4) and
        # REQUIRE SSL accounts answer 1045 to the right password too; no password would help
        (1045, "disable", MARIADB_GREETING, False, ["unencrypted", "require_secure_transport",
                                                    "sslmode"]),
        (1045, "disable", None, False, ["unencrypted"]),
        # plaintext to a server without TLS: it cannot require it, so the password is wrong
        (1045, "disable", PLAIN_GREETING, True, ["wrong password"]),
        # MySQL: 1698 is a plugin that takes no password (auth_socket)
        (1698, "verify-full", MYSQL_GREETING, False, ["without a password", "auth_socket"]),
        (1698, "verify-full", None, False, ["without a password"]),
        # MariaDB: also a wrong password on a chain ending in unix_socket (a retried setSecret
        # must still find the password it set)
        (1698, "verify-full", MARIADB_GREETING, True, ["unix_socket"]),
        (1698, "disable", MARIADB_GREETING, False, ["unencrypted"]),
        # refusals no password fixes
        (3118, "verify-full", MYSQL_GREETING, False, ["locked"]),
        (4151, "verify-full", MARIADB_GREETING, False, ["locked"]),
        (4150, "verify-full", MARIADB_GREETING, False, ["blocked"]),
        (3955, "verify-full", MYSQL_GREETING, False, ["blocked"]),
        (1862, "verify-full", MYSQL_GREETING, False, ["expired"]),
        (1130, "verify-full", MYSQL_GREETING, False, ["may not connect"]),
    ],
)
def test_only_a_wrong_password_is_a_password_refusal(
        errno: int, sslmode: str, greeting: Greeting | None, refused: bool,
        words: list[str]) -> None:
    # GIVEN a refused login, and what the server's greeting said (version, TLS offered)
    credentials = creds(password=SECRET, sslmode=sslmode)
    # WHEN it is mapped
    error = map_connect_error(op_error(errno, DENIED), credentials, AdapterOptions(),
                              greeting=greeting)
    # THEN only a wrong password is a PasswordRefusedError (the one refusal that makes setSecret
    # try other versions' passwords); the rest are LoginErrors that say what is wrong
    assert isinstance(error, LoginError)
    assert isinstance(error, PasswordRefusedError) is refused
    for word in words:
        assert word in str(error)
    assert SECRET not in str(error)
    assert error.sqlstate == str(errno)


@pytest.mark.parametrize(
    ("errno", "error_class", "dual", "words"),
    [
        (1820, LoginError, False, ["expired"]),
        (1226, DatabaseError, False, ["resource limit", "MAX_QUERIES_PER_HOUR"]),
        (1227, PrivilegeError, False, ["lacks a privilege", "CREATE USER"]),
        (1227, PrivilegeError, True, ["APPLICATION_PASSWORD_ADMIN", "`masterarn`"]),
        (1142, PrivilegeError, False, ["lacks a privilege"]),
        (1044, PrivilegeError, False, ["lacks a privilege"]),
        (1410, PrivilegeError, False, ["lacks a privilege"]),
        (1698, PrivilegeError, False, ["ADMIN OPTION"]),
        (1133, DatabaseError, False, ["does not exist"]),
        (1396, DatabaseError, False, ["refused the account change"]),
        (1819, DatabaseError, False, ["password policy", "PASSWORD_LENGTH"]),
        (1470, DatabaseError, False, ["too long"]),
        (3638, DatabaseError, False, ["password history"]),
        (3638, DatabaseError, True, ["password history", "PASSWORD HISTORY 0",
                                     "mysql_native_password", "alternating-users"]),
        (3892, PrivilegeError, False, ["REQUIRE CURRENT"]),
        (3895, DatabaseError, False, ["cannot retain", "single-user or alternating-users"]),
        (1064, DatabaseError, False, ["syntax"]),
        (2013, DbTimeoutError, False, ["no answer"]),
        (2006, ConnectError, False, ["connection was lost"]),
    ],
)
def test_statement_errors_map_and_never_show_the_secret(
        errno: int, error_class: type[DatabaseError], dual: bool, words: list[str]) -> None:
    # GIVEN a failed statement that carried a password, and a server message quoting it
    statement = build_set_password(MYSQL_80, APP, "caching_sha2_password", SECRET)
    message = f"You have an error near 'BY '{SECRET}''"
    if errno == 2013:
        message += " (timed out)"
    # WHEN it is mapped
    error = map_statement_error(pymysql.err.OperationalError(errno, message), statement,
                                "db:3306", dual_password=dual)
    # THEN the class fits, the action and host are named, and the server's text is left out
    assert type(error) is error_class
    assert "set the password of 'app'@'%'" in str(error)
    assert "db:3306" in str(error)
    for word in words:
        assert word in str(error)
    assert SECRET not in str(error)
    assert error.sqlstate == str(errno)


def test_statement_errors_without_secrets_keep_the_servers_words() -> None:
    statement = Statement.build("SHOW GRANTS FOR {0}", [APP], action="read the grants")
    error = map_statement_error(
        pymysql.err.OperationalError(1141, "There is no such grant defined for user 'app'"),
        statement, "db:3306")
    assert "does not exist" in str(error)
    error = map_statement_error(pymysql.err.OperationalError(1234, "odd thing"), statement,
                                "db:3306")
    assert "odd thing" in str(error)


# --------------------------------------------------------------------------------------------
# TLS settings and connect arguments
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sslmode", "check_hostname", "verify_mode"),
    [
        ("verify-full", True, ssl.CERT_REQUIRED),
        ("verify-ca", False, ssl.CERT_REQUIRED),
        ("require", False, ssl.CERT_NONE),
    ],
)
def test_ssl_context_per_sslmode(sslmode: Any, check_hostname: bool,
                                 verify_mode: ssl.VerifyMode) -> None:
    context = make_ssl_context(sslmode, None)
    assert context is not None
    assert context.check_hostname is check_hostname
    assert context.verify_mode == verify_mode


def test_disable_means_no_tls_at_all() -> None:
    # GIVEN a secret that opts out of TLS
    adapter = MySQLAdapter(AdapterOptions())
    kwargs = adapter.connect_kwargs(creds(ssl=False))
    # THEN PyMySQL is told to disable TLS (not left to negotiate an unverified one)
    assert kwargs["ssl_disabled"] is True
    assert "ssl" not in kwargs


def test_connect_arguments() -> None:
    # GIVEN options and a credential with a non-ASCII password and a dbname
    adapter = MySQLAdapter(AdapterOptions(connect_timeout=3.0, statement_timeout=7.0))
    kwargs = adapter.connect_kwargs(creds(password="pä55-wörd-xyz", dbname="shop"))
    # THEN the password is UTF-8 bytes (PyMySQL would encode str as latin-1), TLS is a verifying
    # context, and the timeouts come from the options (the login's reads use the connect timeout)
    assert kwargs["password"] == "pä55-wörd-xyz".encode()
    assert isinstance(kwargs["ssl"], ssl.SSLContext)
    assert kwargs["ssl"].check_hostname
    assert kwargs["ssl"].verify_mode == ssl.CERT_REQUIRED
    assert (kwargs["connect_timeout"], kwargs["read_timeout"], kwargs["write_timeout"]) == \
        (3.0, 3.0, 7.0)
    assert kwargs["database"] == "shop"
    assert kwargs["autocommit"] is True
    assert "database" not in adapter.connect_kwargs(creds())
    # ... and one context per sslmode is reused
    assert adapter.connect_kwargs(creds())["ssl"] is kwargs["ssl"]


def test_an_unreadable_ca_bundle_is_a_tls_error(tmp_path: Any) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(TlsError) as info:
        make_ssl_context("verify-full", missing)
    assert missing in str(info.value)
    assert info.value.__context__ is None


# --------------------------------------------------------------------------------------------
# The session's flows, against a scripted connection
# --------------------------------------------------------------------------------------------

Responder = Callable[[str], list[tuple[Any, ...]]]


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn
        self.rows: list[tuple[Any, ...]] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, args: tuple[str, ...] | None = None) -> int:
        text = sql if args is None else Statement(sql, tuple(args)).render()
        self.conn.executed.append(text)
        self.rows = self.conn.respond(text)
        return len(self.rows)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows


class FakeConnection:
    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.executed: list[str] = []
        self.closed = 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        self.closed += 1
        if self.closed > 1:
            raise pymysql.err.Error("Already closed")


def responder(server: tuple[str, str], tables: dict[str, Any]) -> Responder:
    """Answers by statement prefix: rows, or an exception to raise."""
    def respond(sql: str) -> list[tuple[Any, ...]]:
        if sql == "SELECT VERSION(), @@version_comment":
            return [server]
        for prefix, rows in tables.items():
            if sql.startswith(prefix):
                if isinstance(rows, BaseException):
                    raise rows
                return list(rows)
        return []
    return respond


def session(respond: Responder, *, user: str = "app", engine: str = "mysql",
            password: str | None = None, probe: Callable[[str, str], bool] | None = None,
            ) -> tuple[MySQLSession, FakeConnection]:
    """A session on a scripted connection, logged in as ``user`` (with ``password``: the one
    the session knows it logged in with; default: the creds() default)."""
    conn = FakeConnection(respond)
    login = creds(username=user, engine=engine) if password is None else \
        creds(username=user, engine=engine, password=password)
    return MySQLSession(conn, login, AdapterOptions(), probe=probe), conn


NEW = "Nw-3b5c7d9e1f-unit"
NEW_HASH = native_password_hash(NEW)


def test_session_is_a_database_session_and_closes_once() -> None:
    s, conn = session(responder(("8.0.36", ""), {}))
    assert isinstance(s, DatabaseSession)
    with s:
        s.ping()
    s.close()
    assert conn.closed == 1
    assert conn.executed == ["SELECT 1"]
    with pytest.raises(DatabaseError):
        s.ping()


def test_own_password_on_mysql8_uses_current_user_and_keeps_the_plugin() -> None:
    # GIVEN MySQL 8 and a user logged in as itself (caching_sha2_password)
    s, conn = session(responder(("8.0.36", "MySQL Community Server - GPL"), {
        "SELECT CURRENT_USER()": [("app@10.0.%",)],
        "SELECT Host, plugin": [("10.0.%", "caching_sha2_password", "$A$005$x")],
    }))
    # WHEN it sets its own password
    with s:
        s.set_password("app", NEW)
    # THEN the account is the CURRENT_USER() one and the plugin is kept
    assert conn.executed[-1] == f"ALTER USER `app`@`10.0.%` IDENTIFIED BY '{NEW}'"


def test_own_password_falls_back_to_show_create_user() -> None:
    # GIVEN a user that may not read mysql.user
    denied = pymysql.err.OperationalError(1142, "SELECT command denied to user 'app'")
    s, conn = session(responder(("10.11.19-MariaDB", ""), {
        "SELECT CURRENT_USER()": [("app@%",)],
        "SELECT Host, plugin": denied,
        "SHOW CREATE USER": [("CREATE USER `app`@`%` IDENTIFIED VIA ed25519 USING 'abc'",)],
    }))
    # WHEN it sets its own password
    with s:
        s.set_password("app", NEW)
    # THEN it read its own definition and kept ed25519, with a client-side hash
    assert conn.executed[-2] == "SHOW CREATE USER `app`@`%`"
    assert conn.executed[-1] == f"SET PASSWORD FOR `app`@`%` = '{ed25519_password_hash(NEW)}'"
    assert NEW not in "\n".join(conn.executed)


def test_another_users_every_host_gets_the_password() -> None:
    # GIVEN a master changing a user that exists on two hosts, with different plugins
    s, conn = session(responder(("8.0.36", ""), {
        "SELECT Host, plugin": [("%", "mysql_native_password", "*OLD"),
                                ("localhost", "caching_sha2_password", "$A$005$")],
    }), user="admin")
    # WHEN its password is set
    with s:
        s.set_password("app", NEW)
    # THEN both accounts get it, each with its own plugin
    assert conn.executed[-2:] == [
        f"ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS '{NEW_HASH}'",
        f"ALTER USER `app`@`localhost` IDENTIFIED BY '{NEW}'",
    ]


def test_mysql_own_native_password_falls_back_to_identified_by() -> None:
    # GIVEN a MySQL account without CREATE USER (ALTER USER ... AS is refused with 1227)
    denied = pymysql.err.OperationalError(1227, "Access denied; you need CREATE USER")
    s, conn = session(responder(("8.0.36", ""), {
        "SELECT CURRENT_USER()": [("app@%",)],
        "SELECT Host, plugin": [("%", "mysql_native_password", "*OLD")],
        "ALTER USER `app`@`%` IDENTIFIED WITH": denied,
    }))
    # WHEN it sets its own password
    with s:
        s.set_password("app", NEW)
    # THEN it tried the hash first, then the one form MySQL allows it, keeping the plugin
    assert conn.executed[-2:] == [
        f"ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS '{NEW_HASH}'",
        f"ALTER USER `app`@`%` IDENTIFIED BY '{NEW}'",
    ]


def test_mysql_master_without_privilege_gets_no_fallback() -> None:
    # GIVEN a master lacking CREATE USER, changing someone else
    denied = pymysql.err.OperationalError(1227, "Access denied; you need CREATE USER")
    s, conn = session(responder(("8.0.36", ""), {
        "SELECT Host, plugin": [("%", "mysql_native_password", "*OLD")],
        "ALTER USER": denied,
    }), user="admin")
    # WHEN it sets the password THEN it fails, with no plaintext retry
    with s, pytest.raises(PrivilegeError):
        s.set_password("app", NEW)
    assert NEW not in "\n".join(conn.executed)


def test_mariadb_master_uses_alter_user() -> None:
    # GIVEN a MariaDB master (CREATE USER, no UPDATE on mysql) changing another user
    s, conn = session(responder(("10.11.19-MariaDB", ""), {
        "SELECT Host, plugin": [("%", "mysql_native_password", "*OLD")],
    }), user="admin")
    with s:
        s.set_password("app", NEW)
    assert conn.executed[-1] == f"ALTER USER `app`@`%` IDENTIFIED BY PASSWORD '{NEW_HASH}'"


def test_a_missing_user_is_an_error() -> None:
    s, _ = session(responder(("8.0.36", ""), {"SELECT Host, plugin": []}), user="admin")
    with s, pytest.raises(DatabaseError) as info:
        s.set_password("ghost", NEW)
    assert "'ghost' does not exist" in str(info.value)


def test_discard_is_a_no_op_without_dual_passwords() -> None:
    # GIVEN MariaDB WHEN the old password is discarded THEN only the version was read
    s, conn = session(responder(("10.11.19-MariaDB", ""), {}))
    with s:
        s.discard_old_password("app")
    assert conn.executed == ["SELECT VERSION(), @@version_comment"]


def test_discard_drops_the_secondary_on_mysql_8() -> None:
    s, conn = session(responder(("8.0.36", ""), {
        "SELECT CURRENT_USER()": [("app@%",)],
        "SELECT Host, plugin": [("%", "mysql_native_password", "*OLD")]}))
    with s:
        s.discard_old_password("app")
    assert conn.executed[-1] == "ALTER USER `app`@`%` DISCARD OLD PASSWORD"


# --------------------------------------------------------------------------------------------
# Dual passwords: the decision table, its statements, and the session's add_password
# --------------------------------------------------------------------------------------------

PASSWORD, KEEP, OLDER = "Nw-new-9f8e7d", "Cur-keep-1a2b3c", "Old-older-4d5e6f"
P_HASH, K_HASH, O_HASH = (native_password_hash(p) for p in (PASSWORD, KEEP, OLDER))
CACHING_HASH = "$A$005$salted-and-not-comparable"


@pytest.mark.parametrize(("plugin", "stored", "secondary", "expected"), [
    ("mysql_native_password", P_HASH, False, "password"),
    ("mysql_native_password", K_HASH.lower(), False, "keep"),
    ("mysql_native_password", O_HASH, False, "other"),
    ("mysql_native_password", "", False, "other"),  # an empty password
    ("mysql_native_password", None, False, "unknown"),  # not read
    ("mysql_native_password", "", True, "none"),  # no secondary
    ("mysql_native_password", K_HASH, True, "keep"),
    ("mysql_native_password", None, True, "unknown"),  # not readable
    ("caching_sha2_password", CACHING_HASH, False, "unknown"),
    ("caching_sha2_password", CACHING_HASH, True, "unknown"),
    ("caching_sha2_password", "", True, "none"),
    ("sha256_password", CACHING_HASH, False, "unknown"),
])
def test_what_a_stored_password_is(plugin: str, stored: str | None, secondary: bool,
                                   expected: str) -> None:
    # GIVEN a stored primary (or secondary) WHEN compared with the rotation's two passwords
    # THEN only unsalted native hashes are matched
    assert stored_as(plugin, stored, PASSWORD, KEEP, secondary=secondary) == expected


# (primary, secondary, keep_logs_in, password_logs_in) -> plan
ADD_PLANS = [
    # a first run: the primary is keep
    ("keep", "other", False, None, ("password",)),
    ("keep", "none", True, None, ("password",)),
    ("keep", "unknown", True, None, ("password",)),
    ("keep", "password", False, None, ("password",)),  # after the safe sequence's first half
    # a retry after success: nothing, which is the whole point (RETAIN would drop keep)
    ("password", "keep", False, None, ()),
    ("password", "keep", True, None, ()),
    ("password", "unknown", True, None, ()),  # keep logged in, so keep is the secondary
    # the primary is the new password but keep is not (provably) the secondary: keep again
    ("password", "unknown", False, None, ("keep", "password")),
    ("password", "none", False, None, ("keep", "password")),
    ("password", "other", True, None, ("keep", "password")),
    # someone else's password is the primary (changed outside rotation, with RETAIN)
    ("other", "keep", True, None, ("keep", "password")),
    ("other", "other", False, None, ("keep", "password")),
    ("other", "unknown", False, True, ("keep", "password")),
    # salted hashes (caching_sha2_password): what logins prove decides
    ("unknown", "none", True, None, ("password",)),
    ("unknown", "unknown", True, None, "probe"),
    ("unknown", "unknown", True, True, ()),
    ("unknown", "unknown", True, False, ("keep", "password")),
    ("unknown", "keep", True, None, "probe"),
    ("unknown", "unknown", False, None, ("keep", "password")),  # a master: no probing
    ("unknown", "none", False, None, ("keep", "password")),
    ("unknown", "unknown", False, True, ("keep", "password")),  # logged in with the new one
]


@pytest.mark.parametrize(("primary", "secondary", "keep_logs_in", "password_logs_in",
                          "expected"), ADD_PLANS)
def test_add_password_plan(primary: Any, secondary: Any, keep_logs_in: bool,
                           password_logs_in: bool | None, expected: Any) -> None:
    # GIVEN what is stored and what logins proved WHEN planned THEN the table's answer
    assert plan_add_password(primary, secondary, keep_logs_in=keep_logs_in,
                             password_logs_in=password_logs_in) == expected


def _apply(state: tuple[str, str | None], plan: tuple[str, ...]) -> tuple[str, str | None]:
    """MySQL's semantics of ``ALTER USER ... IDENTIFIED BY x RETAIN CURRENT PASSWORD``: x
    becomes the primary, the primary before becomes the secondary."""
    for which in plan:
        state = (which, state[0])
    return state


# Every stored state (primary, secondary) a login can meet: a user changing itself logged in
# with keep, so keep is one of the two; a master may meet any state.
STATES = [
    pytest.param(primary, secondary, comparable, own,
                 id=f"{'self' if own else 'master'}-{'native' if comparable else 'caching'}-"
                    f"{primary}-{secondary}")
    for primary in ("keep", "password", "other")
    for secondary in ("keep", "password", "other", None)
    for comparable in (True, False)
    for own in (True, False)
    if not own or "keep" in (primary, secondary)
]


@pytest.mark.parametrize(("primary", "secondary", "comparable", "own"), STATES)
def test_every_state_reaches_the_goal_and_keep_never_stops_working(
        primary: str, secondary: str | None, comparable: bool, own: bool) -> None:
    # GIVEN a stored state, seen as MySQL shows it (caching_sha2 hashes: not comparable)
    valid = {primary, secondary} - {None}
    seen_primary: Any = primary if comparable else "unknown"
    seen_secondary: Any = ("none" if secondary is None else secondary) if comparable else \
        ("none" if secondary is None else "unknown")

    # WHEN it is planned (asking a login with the new password where the table says so)
    plan = plan_add_password(seen_primary, seen_secondary, keep_logs_in=own)
    if plan == "probe":
        plan = plan_add_password(seen_primary, seen_secondary, keep_logs_in=own,
                                 password_logs_in="password" in valid)
    assert plan != "probe"

    # THEN keep works after every statement (a crash between two loses nothing), and the end
    # state is primary = the new password, secondary = keep, or, where both already log in
    # and nothing can tell which is which, unchanged
    state: tuple[str, str | None] = (primary, secondary)
    for which in plan:
        state = _apply(state, (which,))
        assert "keep" in state
    if plan == () and not comparable:
        assert {state[0], state[1]} == {"keep", "password"}
    else:
        assert state == ("password", "keep")


@pytest.mark.parametrize(("plugin", "plan", "expected"), [
    ("mysql_native_password", ("password",),
     [f"ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS '{P_HASH}' "
      "RETAIN CURRENT PASSWORD"]),
    ("mysql_native_password", ("keep", "password"),
     [f"ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS '{K_HASH}' "
      "RETAIN CURRENT PASSWORD",
      f"ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS '{P_HASH}' "
      "RETAIN CURRENT PASSWORD"]),
    ("caching_sha2_password", ("password",),
     [f"ALTER USER `app`@`%` IDENTIFIED BY '{PASSWORD}' RETAIN CURRENT PASSWORD"]),
    ("caching_sha2_password", ("keep", "password"),
     [f"ALTER USER `app`@`%` IDENTIFIED BY '{KEEP}' RETAIN CURRENT PASSWORD",
      f"ALTER USER `app`@`%` IDENTIFIED BY '{PASSWORD}' RETAIN CURRENT PASSWORD"]),
    ("mysql_native_password", (), []),
])
@pytest.mark.parametrize("server", DUAL_SERVERS, ids=ids)
def test_add_password_statements(server: ServerInfo, plugin: str, plan: Any,
                                 expected: list[str]) -> None:
    # GIVEN MySQL 8.0.14+ WHEN a plan's statements are built THEN one RETAIN per password,
    # native passwords as client-side hashes only
    statements = build_add_password(server, APP, plugin, plan, PASSWORD, KEEP)
    assert [st.render() for st in statements] == expected
    if plugin == "mysql_native_password":
        assert not any(PASSWORD in st.render() or KEEP in st.render() for st in statements)


@pytest.mark.parametrize("server", NO_DUAL_SERVERS, ids=ids)
def test_add_password_statements_elsewhere_are_refused(server: ServerInfo) -> None:
    with pytest.raises(ConfigError, match="ROTATION_STRATEGY=dual-password"):
        build_add_password(server, APP, None, ("password",), PASSWORD, KEEP)


def dual_responder(server: tuple[str, str], accounts: list[tuple[Any, ...]], *,
                   current: str = "app@%",
                   extra: dict[str, Any] | None = None) -> Responder:
    """A MySQL 8 server whose mysql.user rows are ``accounts`` (Host, plugin, auth, secondary);
    ``accounts`` may change between calls (the test mutates the list)."""
    def respond(sql: str) -> list[tuple[Any, ...]]:
        if sql == "SELECT VERSION(), @@version_comment":
            return [server]
        for prefix, rows in (extra or {}).items():
            if sql.startswith(prefix):
                if isinstance(rows, BaseException):
                    raise rows
                return list(rows)
        if sql == "SELECT CURRENT_USER()":
            return [(current,)]
        if sql.startswith("SELECT Host, plugin, authentication_string, JSON_UNQUOTE"):
            if "AND Host" in sql:
                host = current.split("@", 1)[1]
                return [row for row in accounts if f"'{row[0]}'" in sql and row[0] == host]
            return list(accounts)
        return []
    return respond


def alters(conn: FakeConnection) -> list[str]:
    return [sql for sql in conn.executed if sql.startswith("ALTER USER")]


def test_add_password_first_run_retains_keep_once() -> None:
    # GIVEN a native account changing itself, logged in with keep, an older password retained
    accounts = [("%", "mysql_native_password", K_HASH, O_HASH)]
    s, conn = session(dual_responder(("8.0.36", ""), accounts), password=KEEP)
    # WHEN the new password is added
    with s:
        s.add_password("app", PASSWORD, KEEP)
    # THEN one ALTER USER with its hash, retaining keep (the older one drops out); the account
    # was read with its secondary, and no plaintext went to the server
    assert alters(conn) == [f"ALTER USER `app`@`%` IDENTIFIED WITH mysql_native_password AS "
                            f"'{P_HASH}' RETAIN CURRENT PASSWORD"]
    assert any("additional_password" in sql for sql in conn.executed)
    assert not any(PASSWORD in sql or KEEP in sql for sql in conn.executed)


def test_add_password_retried_after_success_changes_nothing() -> None:
    # GIVEN an account that already holds the new password as primary and keep as secondary
    accounts = [("%", "mysql_native_password", P_HASH, K_HASH)]
    s, conn = session(dual_responder(("8.0.36", ""), accounts), password=KEEP)
    # WHEN setSecret is retried THEN nothing is altered (RETAIN again would drop keep; this is
    # what ROTATION_MYSQL_DUAL_PASSWORD's retry could do)
    with s:
        s.add_password("app", PASSWORD, KEEP)
    assert alters(conn) == []


def test_add_password_without_select_on_mysql_user_trusts_the_login() -> None:
    # GIVEN a user that may not read mysql.user, whose primary (SHOW CREATE USER) is the new one
    denied = pymysql.err.OperationalError(1142, "SELECT command denied to user 'app'")
    create = f"CREATE USER `app`@`%` IDENTIFIED WITH 'mysql_native_password' AS '{P_HASH}'"
    s, conn = session(dual_responder(("8.0.36", ""), [], extra={
        "SELECT Host, plugin": denied, "SHOW CREATE USER": [(create,)]}), password=KEEP)
    # WHEN it adds the password (a retry) THEN keep's login proves keep is the secondary
    with s:
        s.add_password("app", PASSWORD, KEEP)
    assert alters(conn) == []
    assert "SHOW CREATE USER `app`@`%`" in conn.executed


def test_add_password_caching_sha2_probes_once_when_a_secondary_exists() -> None:
    # GIVEN a caching_sha2_password account with a secondary (salted: nothing to compare)
    accounts = [("%", "caching_sha2_password", CACHING_HASH, CACHING_HASH)]
    probes: list[tuple[str, str]] = []

    def probe(user: str, password: str) -> bool:
        probes.append((user, password))
        return False  # a first run: the new password does not log in yet

    s, conn = session(dual_responder(("8.0.36", ""), accounts), password=KEEP, probe=probe)
    # WHEN the new password is added
    with s:
        s.add_password("app", PASSWORD, KEEP)
    # THEN one login with the new password (refused), then keep again and the new one, each
    # retaining: keep works throughout, whichever of the two it was
    assert probes == [("app", PASSWORD)]
    assert alters(conn) == [
        f"ALTER USER `app`@`%` IDENTIFIED BY '{KEEP}' RETAIN CURRENT PASSWORD",
        f"ALTER USER `app`@`%` IDENTIFIED BY '{PASSWORD}' RETAIN CURRENT PASSWORD"]


def test_add_password_caching_sha2_retry_is_recognised_by_the_probe() -> None:
    accounts = [("%", "caching_sha2_password", CACHING_HASH, CACHING_HASH)]
    s, conn = session(dual_responder(("8.0.36", ""), accounts), password=KEEP,
                      probe=lambda user, password: True)
    with s:
        s.add_password("app", PASSWORD, KEEP)
    assert alters(conn) == []


def test_add_password_caching_sha2_without_secondary_needs_no_probe() -> None:
    # GIVEN the first dual rotation of a caching_sha2_password account (no secondary yet)
    accounts = [("%", "caching_sha2_password", CACHING_HASH, None)]

    def probe(user: str, password: str) -> bool:
        raise AssertionError("no second login is needed")

    s, conn = session(dual_responder(("8.0.36", ""), accounts), password=KEEP, probe=probe)
    with s:
        s.add_password("app", PASSWORD, KEEP)
    # THEN keep, which logged in, is the primary: one RETAIN
    assert alters(conn) == [
        f"ALTER USER `app`@`%` IDENTIFIED BY '{PASSWORD}' RETAIN CURRENT PASSWORD"]


def test_add_password_by_a_master_for_every_host() -> None:
    # GIVEN a master (masterarn) and a user on two hosts: native (retry done) and caching_sha2
    accounts = [("%", "mysql_native_password", P_HASH, K_HASH),
                ("10.0.%", "caching_sha2_password", CACHING_HASH, CACHING_HASH)]
    s, conn = session(dual_responder(("8.0.36", ""), accounts, current="admin@%"),
                      user="admin", password="master-pw-0")
    with s:
        s.add_password("app", PASSWORD, KEEP)
    # THEN the native account is left alone, the caching_sha2 one gets the safe sequence (a
    # master cannot prove which password is which, and does not probe)
    assert alters(conn) == [
        f"ALTER USER `app`@`10.0.%` IDENTIFIED BY '{KEEP}' RETAIN CURRENT PASSWORD",
        f"ALTER USER `app`@`10.0.%` IDENTIFIED BY '{PASSWORD}' RETAIN CURRENT PASSWORD"]


def test_add_password_refuses_an_unrotatable_plugin_before_any_change() -> None:
    # GIVEN a user on two hosts, the second an IAM account
    accounts = [("%", "mysql_native_password", K_HASH, None),
                ("10.0.%", "AWSAuthenticationPlugin", "RDS", None)]
    s, conn = session(dual_responder(("8.0.36", ""), accounts, current="admin@%"),
                      user="admin")
    with s, pytest.raises(DatabaseError, match="AWSAuthenticationPlugin"):
        s.add_password("app", PASSWORD, KEEP)
    assert alters(conn) == []


def test_add_password_own_native_without_create_user_sends_identified_by() -> None:
    # GIVEN a MySQL account without CREATE USER (but with APPLICATION_PASSWORD_ADMIN)
    denied = pymysql.err.OperationalError(1227, "Access denied; you need CREATE USER")
    accounts = [("%", "mysql_native_password", K_HASH, None)]
    s, conn = session(dual_responder(("8.0.36", ""), accounts, extra={
        "ALTER USER `app`@`%` IDENTIFIED WITH": denied}), password=KEEP)
    with s:
        s.add_password("app", PASSWORD, KEEP)
    # THEN the hashed form was tried, then the plaintext form, both retaining
    assert alters(conn)[-1] == \
        f"ALTER USER `app`@`%` IDENTIFIED BY '{PASSWORD}' RETAIN CURRENT PASSWORD"


def test_add_password_without_application_password_admin_names_the_fixes() -> None:
    denied = pymysql.err.OperationalError(
        1227, "Access denied; you need (at least one of) the APPLICATION_PASSWORD_ADMIN")
    accounts = [("%", "caching_sha2_password", CACHING_HASH, None)]
    s, _ = session(dual_responder(("8.0.36", ""), accounts, extra={"ALTER USER": denied}),
                   password=KEEP)
    with s, pytest.raises(PrivilegeError) as info:
        s.add_password("app", PASSWORD, KEEP)
    assert "APPLICATION_PASSWORD_ADMIN" in str(info.value)
    assert "`masterarn`" in str(info.value)
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("version", ["10.11.19-MariaDB", "8.0.13", "5.7.44"])
def test_add_password_without_dual_passwords_fails_before_any_change(version: str) -> None:
    s, conn = session(responder((version, ""), {}), password=KEEP)
    with s, pytest.raises(ConfigError, match="alternating-users"):
        s.add_password("app", PASSWORD, KEEP)
    assert conn.executed == ["SELECT VERSION(), @@version_comment"]


def test_adapter_says_which_engines_have_dual_passwords() -> None:
    adapter = MySQLAdapter(AdapterOptions())
    assert [adapter.supports_dual_password(e) for e in ("mysql", "aurora-mysql", "mariadb")] \
        == [True, True, False]


def test_aurora_version_is_asked_for_aurora_engines() -> None:
    s, _ = session(responder(("8.0.28", "Source distribution"), {
        "SELECT AURORA_VERSION()": [("3.04.0",)]}), engine="aurora-mysql")
    with s:
        assert s.server.describe() == "Aurora MySQL 3.04.0 (MySQL 8.0.28)"


def test_sync_clone_on_mysql8_creates_replays_and_copies_default_roles() -> None:
    # GIVEN a source on MySQL 8 with a role and a default role, and no clone yet
    clone_grants = ["GRANT USAGE ON *.* TO `app_clone`@`%`"]

    def respond(sql: str) -> list[tuple[Any, ...]]:
        if sql.startswith("SELECT VERSION()"):
            return [("8.0.36", "")]
        if sql.startswith("SELECT Host, plugin") and "'app'" in sql:
            return [("%", "caching_sha2_password", "$A$")]
        if sql == "SHOW GRANTS FOR `app`@`%`":
            return [("GRANT USAGE ON *.* TO `app`@`%`",), ("GRANT `reader`@`%` TO `app`@`%`",)]
        if sql == "SHOW GRANTS FOR `app_clone`@`%`":
            return [(line,) for line in clone_grants]
        if sql.startswith("GRANT "):
            clone_grants.append(sql)
        if sql.startswith("SELECT DEFAULT_ROLE_USER") and "'app'" in sql:
            return [("reader", "%")]
        return []
    s, conn = session(respond, user="admin")
    # WHEN the clone is synced
    with s:
        s.sync_clone("app", "app_clone", NEW)
    # THEN it is created with the source's plugin, gets the role (added: nothing to revoke
    # from a new clone), and its default role
    changes = [sql for sql in conn.executed if not sql.startswith(("SELECT", "SHOW"))]
    assert changes == [
        f"CREATE USER `app_clone`@`%` IDENTIFIED WITH caching_sha2_password BY '{NEW}'",
        "GRANT `reader`@`%` TO `app_clone`@`%`",
        "SET DEFAULT ROLE `reader`@`%` TO `app_clone`@`%`",
    ]


def mariadb_grants_server(source: list[str], clone: list[str],
                          refuse: str | None = None) -> Responder:
    """A MariaDB whose SHOW GRANTS follow the GRANT / REVOKE ALL / ALTER USER statements run on
    `app_clone`@`%` (enough of them for these flows); ``refuse`` is a statement prefix the
    master may not run (1044)."""
    def respond(sql: str) -> list[tuple[Any, ...]]:
        if sql.startswith("SELECT VERSION()"):
            return [("10.11.19-MariaDB", "")]
        if refuse is not None and sql.startswith(refuse):
            raise pymysql.err.OperationalError(
                1044, "Access denied for user 'admin'@'%' to database 'other'")
        if sql.startswith("SELECT Host, plugin") and "'app'" in sql:
            return [("%", "mysql_native_password", "*OLD")]
        if sql.startswith("SELECT Host, plugin") and "'app_clone'" in sql:
            return [("%", "mysql_native_password", "*OLDER")]
        if sql == "SHOW GRANTS FOR `app`@`%`":
            return [(line,) for line in source]
        if sql == "SHOW GRANTS FOR `app_clone`@`%`":
            return [(line,) for line in clone]
        if sql.startswith("REVOKE ALL"):
            clone[:] = ["GRANT USAGE ON *.* TO `app_clone`@`%`"]
        elif sql.startswith("GRANT ") and sql not in clone:
            clone.append(sql)
        return []
    return respond


def test_mariadb_sync_sets_require_and_limits_with_alter_user() -> None:
    # GIVEN a MariaDB source with REQUIRE SSL and a resource limit, and a clone with its grant
    source = ["GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*OLD' REQUIRE SSL WITH "
              "MAX_QUERIES_PER_HOUR 10", "GRANT SELECT ON `shop`.* TO `app`@`%`"]
    clone = ["GRANT USAGE ON *.* TO `app_clone`@`%` IDENTIFIED BY PASSWORD '*OLDER'",
             "GRANT SELECT ON `shop`.* TO `app_clone`@`%`"]
    s, conn = session(mariadb_grants_server(source, clone), user="admin")
    # WHEN the clone is synced
    with s:
        s.sync_clone("app", "app_clone", NEW)
    # THEN the options are set with ALTER USER (CREATE USER suffices; GRANT ... REQUIRE would
    # need UPDATE on mysql.*), no privilege is revoked or granted again, and the password of
    # the existing clone changes last
    changes = [sql for sql in conn.executed if not sql.startswith(("SELECT", "SHOW"))]
    assert changes == [
        "ALTER USER `app_clone`@`%` REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 10 "
        "MAX_UPDATES_PER_HOUR 0 MAX_CONNECTIONS_PER_HOUR 0 MAX_USER_CONNECTIONS 0 "
        "MAX_STATEMENT_TIME 0",
        f"ALTER USER `app_clone`@`%` IDENTIFIED BY PASSWORD '{NEW_HASH}'",
    ]


def test_a_grant_the_master_may_not_give_fails_before_any_revoke() -> None:
    # GIVEN a source with a grant the master may not give, and a clone with one it should lose
    source = ["GRANT USAGE ON *.* TO `app`@`%`", "GRANT SELECT ON `other`.* TO `app`@`%`"]
    clone = ["GRANT USAGE ON *.* TO `app_clone`@`%`",
             "GRANT SELECT ON `shop`.* TO `app_clone`@`%`"]
    before = list(clone)
    s, conn = session(mariadb_grants_server(source, clone, refuse="GRANT SELECT ON `other`"),
                      user="admin")
    # WHEN the clone is synced
    with s, pytest.raises(PrivilegeError) as info:
        s.sync_clone("app", "app_clone", NEW)
    # THEN it fails naming the grant, before anything was revoked, and before the clone (the
    # previous user, maybe still in use) got a new password
    assert "copy 'GRANT SELECT ON `other`.*' to 'app_clone'@'%'" in str(info.value)
    assert "nothing was revoked from 'app_clone'@'%'" in str(info.value)
    assert "CREATE USER" in str(info.value)  # the hint: what a master needs
    assert not any(sql.startswith("REVOKE") for sql in conn.executed)
    assert not any("IDENTIFIED" in sql for sql in conn.executed)
    assert clone == before


def test_sync_clone_refuses_the_same_name() -> None:
    s, _ = session(responder(("8.0.36", ""), {}))
    with s, pytest.raises(SecretFormatError):
        s.sync_clone("app", "app", NEW)


def test_statement_failures_carry_no_driver_exception() -> None:
    # GIVEN a statement the server rejects with a message quoting the password
    failure = pymysql.err.ProgrammingError(1064, f"syntax error near '{NEW}'")
    s, _ = session(responder(("8.0.36", ""), {
        "SELECT CURRENT_USER()": [("app@%",)],
        "SELECT Host, plugin": [("%", "caching_sha2_password", "")],
        "ALTER USER": failure,
    }))
    # WHEN it fails
    with s, pytest.raises(DatabaseError) as info:
        s.set_password("app", NEW)
    # THEN neither the message nor the exception chain carries the driver's text
    assert NEW not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert info.value.driver_error == "ProgrammingError"
    assert info.value.sqlstate == "1064"

