"""Bad input, rejected before anything happens, by an error that names what is wrong.

Three tables (events, secret values, settings), each row: the input, the error class, the key the
message must name, and whether the message must name the secret ARN (every row where the input
carries one). No message may show a password or RotationToken. Then property-based tests
(hypothesis) for secret parsing and for the PostgreSQL adapter's quoting of hostile names.
"""

from __future__ import annotations

import contextlib
import json
import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rotation.config import Settings
from rotation.credentials import ENGINE_FAMILIES, MAX_NAME_LENGTH, DbCredentials, parse_secret
from rotation.errors import (
    ConfigError,
    EventError,
    RotationError,
    SecretFormatError,
    UnknownStepError,
)
from rotation.event import RotationEvent
from tests.conftest import LeakScan

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"
TOKEN = "11111111-2222-4333-8444-555555555555"
ROTATION_TOKEN = "RotTok-" + "a1B2" * 12
PASSWORD = "s3cret-VALUE-never-shown"
HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(exc: BaseException, leak_scan: LeakScan, *, key: str | None, arn: str | None) -> str:
    text = str(exc)
    leak_scan.add(PASSWORD, ROTATION_TOKEN)
    leak_scan.add_text(text)
    if key is not None:
        assert key in text, f"the message does not name {key!r}: {text}"
    if arn is not None:
        assert arn in text, f"the message does not name the secret {arn}: {text}"
    assert len(text) < 1200, f"the message is not bounded ({len(text)} characters)"
    return text


# -- events ----------------------------------------------------------------------------------------

def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"Step": "createSecret", "SecretId": ARN,
                            "ClientRequestToken": TOKEN, "RotationToken": ROTATION_TOKEN}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


MISSING = ...
EVENT_ROWS: list[tuple[str, object, type[RotationError], str | None, str | None]] = [
    ("None", None, EventError, None, None),
    ("a list", [event()], EventError, None, None),
    ("a string", json.dumps(event()), EventError, None, None),
    ("a number", 42, EventError, None, None),
    ("empty object", {}, EventError, "`Step`", None),
    ("Step missing", event(Step=MISSING), EventError, "`Step`", ARN),
    ("Step null", event(Step=None), EventError, "`Step`", ARN),
    ("Step a number", event(Step=1), EventError, "`Step`", ARN),
    ("Step empty", event(Step=""), EventError, "`Step`", ARN),
    ("Step unknown", event(Step="deleteSecret"), UnknownStepError, "createSecret", ARN),
    ("Step wrong case", event(Step="createsecret"), UnknownStepError, "createSecret", ARN),
    ("Step with NUL", event(Step="createSecret\x00"), UnknownStepError, "createSecret", ARN),
    ("Step oversized", event(Step="x" * 100_000), UnknownStepError, "createSecret", ARN),
    ("SecretId missing", event(SecretId=MISSING), EventError, "`SecretId`", None),
    ("SecretId a list", event(SecretId=[ARN]), EventError, "`SecretId`", None),
    ("SecretId blank", event(SecretId="   "), EventError, "`SecretId`", None),
    ("SecretId oversized", event(SecretId="a" * 3000), EventError, "`SecretId`", None),
    ("token missing", event(ClientRequestToken=MISSING), EventError, "`ClientRequestToken`",
     ARN),
    ("token a number", event(ClientRequestToken=12345), EventError, "`ClientRequestToken`",
     ARN),
    ("token too short", event(ClientRequestToken="abc"), EventError, "`ClientRequestToken`",
     ARN),
    ("token oversized", event(ClientRequestToken="a" * 65), EventError,
     "`ClientRequestToken`", ARN),
    ("RotationToken oversized", event(RotationToken="R" * 300), EventError, "`RotationToken`",
     ARN),
    ("RotationToken a number", event(RotationToken=12345), EventError, "`RotationToken`", ARN),
    ("RotationToken empty", event(RotationToken=""), EventError, "`RotationToken`", ARN),
]


@pytest.mark.parametrize(("raw", "error", "key", "arn"), [row[1:] for row in EVENT_ROWS],
                         ids=[row[0] for row in EVENT_ROWS])
def test_bad_event_is_rejected(raw: object, error: type[RotationError], key: str | None,
                               arn: str | None, leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a malformed event is read
    with pytest.raises(error) as info:
        RotationEvent.from_dict(raw)

    # THEN the error names the key and the secret (when the event has one), and no token
    assert type(info.value) is error
    text = check(info.value, leak_scan, key=key, arn=arn)
    assert ROTATION_TOKEN not in text


# -- secret values ---------------------------------------------------------------------------------

def secret(**changes: Any) -> str:
    base: dict[str, Any] = {"engine": "postgres", "host": "db.example.internal", "port": 5432,
                            "username": "app_user", "password": PASSWORD, "dbname": "appdb"}
    base.update(changes)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


SECRET_ROWS: list[tuple[str, str | None, str | None]] = [
    # (row id, SecretString, key the message names; None: the whole value is wrong)
    ("no SecretString (binary secret)", None, None),
    ("empty string", "", None),
    ("not JSON", "engine=postgres host=db", None),
    ("python repr, not JSON", "{'engine': 'postgres'}", None),
    ("JSON array", "[]", None),
    ("JSON string", '"postgres"', None),
    ("JSON null", "null", None),
    ("JSON number", "5432", None),
    ("deeply nested JSON", '{"engine": ' + "[" * 50_000 + "]" * 50_000 + "}", None),
    ("empty object", "{}", "`engine`"),
    ("engine missing", secret(engine=...), "`engine`"),
    ("engine a number", secret(engine=5), "`engine`"),
    ("engine empty", secret(engine=""), "`engine`"),
    ("engine with NUL", secret(engine="postgres\x00"), "`engine`"),
    ("host missing", secret(host=...), "`host`"),
    ("host a number", secret(host=123), "`host`"),
    ("host blank", secret(host="   "), "`host`"),
    ("host with NUL", secret(host="db\x00.example"), "`host`"),
    ("host oversized", secret(host="h" * (MAX_NAME_LENGTH + 1)), "`host`"),
    ("username missing", secret(username=...), "`username`"),
    ("username a list", secret(username=["app"]), "`username`"),
    ("username empty", secret(username=""), "`username`"),
    ("username with NUL", secret(username="app\x00; DROP ROLE x"), "`username`"),
    ("username oversized", secret(username="u" * (MAX_NAME_LENGTH + 1)), "`username`"),
    ("password missing", secret(password=...), "`password`"),
    ("password null", secret(password=None), "`password`"),
    ("password empty", secret(password=""), "`password`"),
    ("password a number", secret(password=12345678), "`password`"),
    ("password with NUL", secret(password=PASSWORD + "\x00"), "`password`"),
    ("dbname a number", secret(dbname=5), "`dbname`"),
    ("dbname with NUL", secret(dbname="app\x00db"), "`dbname`"),
    ("dbname oversized", secret(dbname="d" * (MAX_NAME_LENGTH + 1)), "`dbname`"),
    ("port not a number", secret(port="abc"), "`port`"),
    ("port a boolean", secret(port=True), "`port`"),
    ("port a float", secret(port=5432.5), "`port`"),
    ("port a list", secret(port=[5432]), "`port`"),
    ("port zero", secret(port=0), "`port`"),
    ("port negative", secret(port=-1), "`port`"),
    ("port above 65535", secret(port=65536), "`port`"),
    ("port huge digit string", secret(port="9" * 30), "`port`"),
    ("plug-in engine without port", secret(engine="fake", port=...), "`port`"),
    ("ssl a string", secret(ssl="yes"), "`ssl`"),
    ("ssl a number", secret(ssl=1), "`ssl`"),
    ("sslmode unknown", secret(sslmode="prefer"), "`sslmode`"),
    ("sslmode allow (silent plaintext fallback)", secret(sslmode="allow"), "`sslmode`"),
    ("sslmode a number", secret(sslmode=2), "`sslmode`"),
    ("ssl false with sslmode verify-full", secret(ssl=False, sslmode="verify-full"), "`ssl`"),
    ("masterarn a number", secret(masterarn=5), "`masterarn`"),
    ("masterarn with NUL", secret(masterarn="arn:aws:x\x00"), "`masterarn`"),
]


@pytest.mark.parametrize(("value", "key"), [row[1:] for row in SECRET_ROWS],
                         ids=[row[0] for row in SECRET_ROWS])
def test_bad_secret_value_is_rejected(value: str | None, key: str | None,
                                      leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a malformed secret value is parsed
    with pytest.raises(SecretFormatError) as info:
        parse_secret(value, ARN)

    # THEN a SecretFormatError names the key and the secret ARN, never the password
    text = check(info.value, leak_scan, key=key, arn=ARN)
    assert PASSWORD not in text
    assert info.value.secret_arn == ARN
    if key is not None:
        assert info.value.key == key.strip("`")
    assert info.value.__cause__ is None  # no driver/JSON error quoting the value rides along


# -- settings --------------------------------------------------------------------------------------

SETTINGS_ROWS: list[tuple[str, dict[str, str], str]] = [
    ("strategy unknown", {"ROTATION_STRATEGY": "round-robin"}, "ROTATION_STRATEGY"),
    ("strategy wrong case", {"ROTATION_STRATEGY": "Single-User"}, "ROTATION_STRATEGY"),
    ("CA bundle missing", {"ROTATION_CA_BUNDLE": "/nonexistent/ca.pem"}, "ROTATION_CA_BUNDLE"),
    ("CA bundle a directory", {"ROTATION_CA_BUNDLE": "/"}, "ROTATION_CA_BUNDLE"),
    ("password length not a number", {"PASSWORD_LENGTH": "long"}, "PASSWORD_LENGTH"),
    ("password length too short", {"PASSWORD_LENGTH": "4"}, "PASSWORD_LENGTH"),
    ("password length too long", {"PASSWORD_LENGTH": "5000"}, "PASSWORD_LENGTH"),
    ("password length negative", {"PASSWORD_LENGTH": "-32"}, "PASSWORD_LENGTH"),
    ("password length a float", {"PASSWORD_LENGTH": "32.5"}, "PASSWORD_LENGTH"),
    ("exclude numbers not a flag", {"EXCLUDE_NUMBERS": "maybe"}, "EXCLUDE_NUMBERS"),
    ("exclude punctuation 2", {"EXCLUDE_PUNCTUATION": "2"}, "EXCLUDE_PUNCTUATION"),
    ("require each type yep", {"REQUIRE_EACH_INCLUDED_TYPE": "yep"},
     "REQUIRE_EACH_INCLUDED_TYPE"),
    ("every character class excluded", {"EXCLUDE_NUMBERS": "true",
                                        "EXCLUDE_PUNCTUATION": "true",
                                        "EXCLUDE_UPPERCASE": "true",
                                        "EXCLUDE_LOWERCASE": "true"}, "EXCLUDE_"),
    ("every character excluded", {"EXCLUDE_CHARACTERS": string.printable}, "EXCLUDE_CHARACTERS"),
    ("connect timeout not a number", {"ROTATION_DB_CONNECT_TIMEOUT": "soon"},
     "ROTATION_DB_CONNECT_TIMEOUT"),
    ("connect timeout zero", {"ROTATION_DB_CONNECT_TIMEOUT": "0"},
     "ROTATION_DB_CONNECT_TIMEOUT"),
    ("connect timeout NaN", {"ROTATION_DB_CONNECT_TIMEOUT": "nan"},
     "ROTATION_DB_CONNECT_TIMEOUT"),
    ("connect timeout infinite", {"ROTATION_DB_CONNECT_TIMEOUT": "inf"},
     "ROTATION_DB_CONNECT_TIMEOUT"),
    ("connect timeout an hour", {"ROTATION_DB_CONNECT_TIMEOUT": "3600"},
     "ROTATION_DB_CONNECT_TIMEOUT"),
    ("dual password on", {"ROTATION_MYSQL_DUAL_PASSWORD": "on"},
     "ROTATION_MYSQL_DUAL_PASSWORD"),
    ("dual password alias beside alternating users",
     {"ROTATION_STRATEGY": "alternating-users", "ROTATION_MYSQL_DUAL_PASSWORD": "true"},
     "ROTATION_MYSQL_DUAL_PASSWORD"),
]


@pytest.mark.parametrize(("env", "name"), [row[1:] for row in SETTINGS_ROWS],
                         ids=[row[0] for row in SETTINGS_ROWS])
def test_bad_setting_is_rejected(env: dict[str, str], name: str, leak_scan: LeakScan) -> None:
    # GIVEN / WHEN the settings are read from a bad environment
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)

    # THEN the error names the variable
    check(info.value, leak_scan, key=name, arn=None)


def test_the_tables_are_big_enough() -> None:
    assert len(EVENT_ROWS) + len(SECRET_ROWS) + len(SETTINGS_ROWS) >= 40


# -- properties: secret parsing --------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
SECRET_KEYS = ("engine", "host", "port", "username", "password", "dbname", "ssl", "sslmode",
               "masterarn")
HOSTILE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                       min_size=1, max_size=40)
PASSWORDS = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&()*+,-.:;<=>?[]^_{|}~",
                    min_size=12, max_size=40).map(lambda s: "PW" + s)


@HYPOTHESIS
@given(raw=st.text(max_size=200))
def test_any_text_parses_or_fails_with_secret_format_error(raw: str, leak_scan: LeakScan) -> None:
    try:
        parse_secret(raw, ARN)
    except SecretFormatError as exc:
        assert ARN in str(exc)


@HYPOTHESIS
@given(data=st.dictionaries(st.sampled_from(SECRET_KEYS), JSON_VALUES, max_size=9),
       password=PASSWORDS)
def test_any_json_object_parses_or_fails_without_showing_the_password(
        data: dict[str, Any], password: str, leak_scan: LeakScan) -> None:
    # GIVEN any JSON object over the secret's keys, with a password
    data["password"] = password
    try:
        credentials = parse_secret(json.dumps(data), ARN)
    except SecretFormatError as exc:
        # THEN a failure names the secret and a key of the secret, never the password
        assert ARN in str(exc)
        assert exc.key is None or exc.key in SECRET_KEYS
        assert password not in str(exc)
        return
    # ... and a success holds exactly what was stored, the password out of repr
    assert credentials.password == password
    assert password not in repr(credentials)
    assert 1 <= credentials.port <= 65535


VALID_SECRETS = st.fixed_dictionaries(
    {"engine": st.sampled_from(sorted(ENGINE_FAMILIES)),
     "host": HOSTILE_TEXT.filter(str.strip),
     "username": HOSTILE_TEXT.filter(str.strip),
     "password": PASSWORDS,
     # engine `elasticache` needs it (AWS's ElastiCache sample key); others carry it forward
     "user_arn": st.just("arn:aws:elasticache:us-east-1:123456789012:user:app-user")},
    optional={"port": st.integers(1, 65535) | st.integers(1, 65535).map(str),
              "dbname": HOSTILE_TEXT,
              "ssl": st.booleans(),
              "masterarn": st.just(ARN + "-master"),
              "extra": JSON_VALUES})


@HYPOTHESIS
@given(data=VALID_SECRETS)
def test_valid_secrets_round_trip(data: dict[str, Any], leak_scan: LeakScan) -> None:
    # GIVEN any valid secret (hostile but legal names, extra keys)
    credentials = parse_secret(json.dumps(data), ARN)

    # WHEN a new version is made from it and stored
    new = credentials.with_user(credentials.username, "PW-new-" + "x" * 20)
    again = parse_secret(json.dumps(new.to_secret_dict()), ARN)

    # THEN everything but the password is carried forward unchanged, unknown keys included
    assert again == new
    assert {k: v for k, v in new.to_secret_dict().items() if k != "password"} == \
        {k: v for k, v in data.items() if k != "password"}
    assert again.username == data["username"]


# -- properties: PostgreSQL quoting of hostile names -----------------------------------------------

def read_identifier(text: str, start: int) -> tuple[str, int]:
    """The double-quoted identifier at ``text[start]`` and the index after it."""
    assert text[start] == '"', text[start:]
    out, i = [], start + 1
    while True:
        end = text.index('"', i)
        out.append(text[i:end])
        if text[end + 1:end + 2] == '"':
            out.append('"')
            i = end + 2
            continue
        return "".join(out), end + 1


def read_literal(text: str, start: int) -> tuple[str, int]:
    """The string literal ('...' or E'...', which psycopg writes with a leading space) at
    ``text[start]`` and the index after it."""
    while text[start] == " ":
        start += 1
    escaped = text[start] == "E"
    i = start + 1 if escaped else start
    assert text[i] == "'", text[start:]
    out, i = [], i + 1
    while True:
        c = text[i]
        if escaped and c == "\\":
            out.append(text[i + 1])
            i += 2
        elif c == "'" and text[i + 1:i + 2] == "'":
            out.append("'")
            i += 2
        elif c == "'":
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1


class RecordingCursor:
    def __init__(self, log: list[str], answers: Callable[[str], list[tuple[Any, ...]]]) -> None:
        self.log, self.answers = log, answers
        self.description: list[tuple[str]] | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, query: Any) -> None:
        text = query.as_string(None)
        # Every statement runs in one Query message behind its own statement timeout.
        prefix = re.match(r"SET LOCAL statement_timeout = [1-9][0-9]*; ", text)
        assert prefix, text
        text = text[prefix.end():]
        self.log.append(text)
        self._rows = self.answers(text)
        self.description = [("x",)] if text.startswith("SELECT") else None

    def nextset(self) -> bool:
        return True  # from the SET's result to the statement's

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def __enter__(self) -> RecordingCursor:
        return self

    def __exit__(self, *_: object) -> None:
        pass


class RecordingConnection:
    """Enough of a psycopg connection for PostgresSession: statements are rendered with
    psycopg's own quoting and recorded, never sent."""

    closed = False

    def __init__(self, answers: Callable[[str], list[tuple[Any, ...]]]) -> None:
        self.log: list[str] = []
        self.answers = answers

        class PgConn:
            @staticmethod
            def encrypt_password(password: bytes, user: bytes, method: bytes) -> bytes:
                return b"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"

            @staticmethod
            def parameter_status(name: bytes) -> bytes | None:
                return None  # a server before PostgreSQL 16 reports no scram_iterations

        self.pgconn = PgConn()

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self.log, self.answers)

    def fileno(self) -> int:
        return -1  # statements return at once: the session's deadline never fires

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def close(self) -> None:
        pass


PG_NAMES = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                   min_size=1, max_size=30).filter(lambda s: len(s.encode()) <= 63)


def _session(answers: Callable[[str], list[tuple[Any, ...]]]) -> tuple[Any, RecordingConnection]:
    from rotation.adapters.postgres import PostgresSession

    conn = RecordingConnection(answers)
    creds = DbCredentials(engine="postgres", host="db", port=5432, username="master",
                          password=PASSWORD, dbname="appdb", sslmode="verify-full")
    return PostgresSession(conn, creds), conn  # type: ignore[arg-type]


@HYPOTHESIS
@given(name=PG_NAMES, password=PASSWORDS)
def test_set_password_quotes_any_name_as_one_identifier(name: str, password: str,
                                                        leak_scan: LeakScan) -> None:
    # GIVEN a session, and any role name PostgreSQL accepts (quotes, semicolons, unicode)
    session, conn = _session(lambda _: [])

    # WHEN the password of that role is set
    session.set_password(name, password)

    # THEN the ALTER ROLE names exactly that role, as one identifier, followed by the verifier;
    # every other statement takes the name as one literal; the password is in none of them
    alter = [s for s in conn.log if s.startswith("ALTER ROLE ")]
    assert len(alter) == 1
    ident, end = read_identifier(alter[0], len("ALTER ROLE "))
    assert ident == name
    assert alter[0][end:].startswith(" WITH PASSWORD 'SCRAM-SHA-256$")
    literal, end = read_literal(alter[0], alter[0].index("PASSWORD ") + len("PASSWORD "))
    assert literal.startswith("SCRAM-SHA-256$")
    assert end == len(alter[0])
    for statement in conn.log:
        assert password not in statement
        if statement.startswith("SELECT"):
            at = statement.rindex("= ") + 2
            value, end = read_literal(statement, at)
            assert value == name
            assert end == len(statement)


@HYPOTHESIS
@given(source=PG_NAMES, clone=PG_NAMES, exists=st.booleans())
def test_sync_clone_quotes_both_names(source: str, clone: str, exists: bool,
                                      leak_scan: LeakScan) -> None:
    # GIVEN a session as a superuser where the clone exists (or not) with the source's
    # attributes, and is not yet a member of the source
    assume(source != clone)

    def answers(statement: str) -> list[tuple[Any, ...]]:
        if "current_setting('server_version_num')" in statement:
            return [("master", True, True, True, False, False, 150000)]
        if "FROM pg_roles WHERE rolname IN" in statement:
            role = (False, False, False, True, False, False, -1, "infinity", False)
            return [(source, *role), *([(clone, *role)] if exists else [])]
        return []

    session, conn = _session(answers)

    # WHEN the clone is synced
    session.sync_clone(source, clone, "PW-" + "y" * 20)

    # THEN CREATE/ALTER names the clone, GRANT names source then clone, each one identifier
    begin = conn.log.index("BEGIN")  # the reads first, then one bounded transaction
    assert conn.log[-1] == "COMMIT"
    assert all(s.startswith("SELECT") for s in conn.log[:begin])
    ddl = [s for s in conn.log[begin + 1:-1] if not s.startswith("SELECT")]
    verb = "ALTER ROLE " if exists else "CREATE ROLE "
    assert ddl[0].startswith(verb)
    assert read_identifier(ddl[0], len(verb))[0] == clone
    grant = ddl[-1]
    assert grant.startswith("GRANT ")
    granted, end = read_identifier(grant, len("GRANT "))
    assert granted == source
    assert grant[end:end + 4] == " TO "
    grantee, end = read_identifier(grant, end + 4)
    assert grantee == clone
    assert end == len(grant)
