"""Secret parsing: AWS's JSON keys, validated up front, errors naming the key and the ARN."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotation.credentials import parse_secret
from rotation.errors import SecretFormatError

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"
GOOD: dict[str, Any] = {"engine": "postgres", "host": "db.internal", "port": 5432,
                        "username": "app", "password": "pw-123456", "dbname": "appdb"}


def secret(**changes: Any) -> str:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None})


def test_aws_sample_secret_parses_with_defaults() -> None:
    creds = parse_secret(secret(port=None, dbname=None), ARN)
    assert (creds.port, creds.dbname, creds.sslmode) == (5432, "postgres", "verify-full")
    assert creds.family == "postgres"
    assert "pw-123456" not in repr(creds)


def test_unknown_keys_are_carried_forward() -> None:
    creds = parse_secret(secret(dbClusterIdentifier="c1"), ARN)
    assert creds.with_user("app", "new-pass-99").to_secret_dict()["dbClusterIdentifier"] == "c1"


@pytest.mark.parametrize(("changes", "sslmode", "opt_out"), [
    ({}, "verify-full", False),
    ({"ssl": True}, "verify-full", False),
    ({"ssl": False}, "disable", True),
    ({"ssl": "false"}, "disable", True),
    ({"ssl": "TRUE"}, "verify-full", False),
    ({"sslmode": "verify-ca"}, "verify-ca", False),
    ({"sslmode": "require"}, "require", False),
    ({"sslmode": "disable"}, "disable", True),
    ({"ssl": False, "sslmode": "disable"}, "disable", True),
])
def test_tls_settings(changes: dict[str, Any], sslmode: str, opt_out: bool) -> None:
    creds = parse_secret(secret(**changes), ARN)
    assert (creds.sslmode, creds.ssl_opt_out) == (sslmode, opt_out)


@pytest.mark.parametrize(("value", "key", "fragment"), [
    (secret(host=None), "host", "missing"),
    (secret(host=""), "host", "empty"),
    (secret(host=5), "host", "must be a string"),
    (secret(username=None), "username", "missing"),
    (secret(username=["a"]), "username", "must be a string"),
    (secret(username="a\x00b"), "username", "NUL"),
    (secret(username="u" * 300), "username", "longer"),
    (secret(password=None), "password", "missing"),
    (secret(password=""), "password", "missing"),
    (secret(password=12345), "password", "must be a string"),
    (secret(engine=None), "engine", "missing"),
    (secret(engine=3), "engine", "must be a string"),
    (secret(port="abc"), "port", "must be a number"),
    (secret(port=True), "port", "must be a number"),
    (secret(port=0), "port", "out of range"),
    (secret(port=70000), "port", "out of range"),
    (secret(port=5432.5), "port", "must be a number"),
    (secret(dbname=7), "dbname", "must be a string"),
    (secret(ssl="yes"), "ssl", "true or false"),
    (secret(ssl=1), "ssl", "true or false"),
    (secret(sslmode="prefer"), "sslmode", "unknown value"),
    (secret(sslmode="allow"), "sslmode", "unknown value"),
    (secret(ssl=False, sslmode="require"), "ssl", "is false"),
    (secret(masterarn=12), "masterarn", "must be a string"),
    (secret(engine="oracle", port=None), "port", "missing"),
])
def test_bad_secrets_name_key_and_arn(value: str, key: str, fragment: str) -> None:
    with pytest.raises(SecretFormatError) as info:
        parse_secret(value, ARN)
    assert info.value.key == key
    assert f"`{key}`" in str(info.value)
    assert ARN in str(info.value)
    assert fragment in str(info.value)
    assert info.value.hint


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '"text"', "null", "{", ""])
def test_non_object_secrets(value: str) -> None:
    with pytest.raises(SecretFormatError) as info:
        parse_secret(value, ARN)
    assert ARN in str(info.value)


def test_json_error_does_not_quote_the_value() -> None:
    with pytest.raises(SecretFormatError) as info:
        parse_secret('{"password": "s3cret-value", oops}', ARN)
    assert "s3cret-value" not in str(info.value)
    assert info.value.__cause__ is None


def test_binary_secret_is_refused() -> None:
    with pytest.raises(SecretFormatError, match="binary"):
        parse_secret(None, ARN)


@given(st.dictionaries(st.sampled_from([*sorted(GOOD), "ssl", "sslmode", "masterarn"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                                 st.floats(allow_nan=False), st.lists(st.integers(), max_size=2)),
                       max_size=10))
def test_parsing_never_raises_anything_but_secret_format_error(data: dict[str, Any]) -> None:
    # Property: any JSON object either parses to credentials or fails with a keyed error.
    try:
        creds = parse_secret(json.dumps(data), ARN)
    except SecretFormatError as exc:
        assert exc.key is None or f"`{exc.key}`" in str(exc)
        assert ARN in str(exc)
    else:
        assert creds.host
        assert creds.username
        assert creds.password
        assert 1 <= creds.port <= 65535
