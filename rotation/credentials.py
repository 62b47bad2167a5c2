"""Parse and validate a secret's JSON into typed database credentials, before anything changes.

The secret format is AWS's (see DESIGN.md): a secret that works with AWS's sample rotation
functions works here unchanged. Unknown keys are kept, so a new version carries them forward.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from rotation.errors import SecretFormatError

SslMode = Literal["verify-full", "verify-ca", "require", "disable"]
SSL_MODES: tuple[SslMode, ...] = ("verify-full", "verify-ca", "require", "disable")

#: engine name -> adapter family; plug-in engines map to themselves.
ENGINE_FAMILIES: Mapping[str, str] = {
    "postgres": "postgres",
    "aurora-postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "redis": "redis",
    "elasticache": "elasticache",
}
DEFAULT_PORTS: Mapping[str, int] = {"postgres": 5432, "mysql": 3306, "redis": 6379,
                                    "elasticache": 6379}
#: families whose secrets need no `host` (rotated through a service API), with the key they
#: need instead: ElastiCache users are named by `user_arn`, as in AWS's sample.
API_FAMILIES: Mapping[str, str] = {"elasticache": "user_arn"}
DEFAULT_DBNAMES: Mapping[str, str] = {"postgres": "postgres"}
MAX_NAME_LENGTH = 256  # beyond any engine's limit; adapters apply their own, tighter one


@dataclass(frozen=True)
class DbCredentials:
    """One database credential, as stored in a secret version. ``repr`` never shows the password."""

    engine: str
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    dbname: str | None
    sslmode: SslMode
    ssl_opt_out: bool = False  # the secret said "ssl": false: logged as a warning where used
    masterarn: str | None = None
    secret_arn: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def family(self) -> str:
        return ENGINE_FAMILIES.get(self.engine, self.engine)

    def with_user(self, username: str, password: str) -> DbCredentials:
        return replace(self, username=username, password=password)

    def to_secret_dict(self) -> dict[str, Any]:
        """The secret JSON for this credential: the original keys, with user and password set."""
        out = dict(self.raw)
        out["username"] = self.username
        out["password"] = self.password
        return out


def _fail(secret_arn: str, key: str, problem: str, hint: str) -> SecretFormatError:
    return SecretFormatError(
        f"key `{key}` {problem} in secret {secret_arn or '(unknown)'}",
        key=key,
        secret_arn=secret_arn,
        hint=hint,
    )


def _text(data: Mapping[str, Any], key: str, arn: str, *, required: bool) -> str | None:
    if key not in data or data[key] is None:
        if required:
            raise _fail(arn, key, "is missing", f"add `{key}` (a string) to the secret JSON")
        return None
    value = data[key]
    if not isinstance(value, str):
        raise _fail(arn, key, f"must be a string, not {type(value).__name__}",
                    f"store `{key}` as a JSON string")
    if required and not value.strip():
        raise _fail(arn, key, "is empty", f"set `{key}` to a non-empty string")
    if "\x00" in value:
        raise _fail(arn, key, "contains a NUL character", f"remove the NUL from `{key}`")
    if key != "password" and len(value) > MAX_NAME_LENGTH:
        raise _fail(arn, key, f"is longer than {MAX_NAME_LENGTH} characters",
                    f"shorten `{key}`")
    return value


def _port(data: Mapping[str, Any], family: str, arn: str) -> int:
    value = data.get("port")
    if value is None:
        if family in DEFAULT_PORTS:
            return DEFAULT_PORTS[family]
        raise _fail(arn, "port", "is missing", "add `port` (a number) to the secret JSON")
    # AWS's samples call int(port), so a digit string is accepted; a bool is not a port.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(arn, "port", f"must be a number, not {type(value).__name__}",
                    "store `port` as a JSON number such as 5432")
    if not 1 <= value <= 65535:
        raise _fail(arn, "port", "is out of range 1-65535", "set `port` to the database's port")
    return value


def _sslmode(data: Mapping[str, Any], arn: str) -> tuple[SslMode, bool]:
    mode = data.get("sslmode")
    ssl = data.get("ssl")
    if isinstance(ssl, str) and ssl.lower() in ("true", "false"):
        ssl = ssl.lower() == "true"  # AWS's MySQL sample accepts "true"/"false" strings
    if ssl is not None and not isinstance(ssl, bool):
        raise _fail(arn, "ssl", f"must be true or false, not {type(ssl).__name__}",
                    "store `ssl` as a JSON boolean, or use `sslmode`")
    if mode is not None:
        if not isinstance(mode, str) or mode not in SSL_MODES:
            raise _fail(arn, "sslmode", "has an unknown value",
                        "use one of " + ", ".join(SSL_MODES))
        if ssl is False and mode != "disable":
            raise _fail(arn, "ssl", f"is false but `sslmode` is {mode}",
                        "remove `ssl`, or set `sslmode` to disable")
        return mode, mode == "disable"
    if ssl is False:
        return "disable", True
    return "verify-full", False


def parse_secret(secret_string: str | None, secret_arn: str, *,
                 require_password: bool = True) -> DbCredentials:
    """Validate a SecretString and return its credentials, or raise SecretFormatError."""
    if secret_string is None:
        raise SecretFormatError(
            f"secret {secret_arn} has no SecretString (binary secrets cannot be rotated)",
            secret_arn=secret_arn,
            hint="store the credential as a JSON SecretString",
        )
    try:
        data = json.loads(secret_string)
    except (ValueError, RecursionError):
        # The JSON error text can quote the value, so it is not passed on.
        raise SecretFormatError(
            f"the value of secret {secret_arn} is not valid JSON",
            secret_arn=secret_arn,
            hint="store a JSON object with keys engine, host, port, username, password",
        ) from None
    if not isinstance(data, dict):
        raise SecretFormatError(
            f"the value of secret {secret_arn} is JSON but not an object",
            secret_arn=secret_arn,
            hint="store a JSON object with keys engine, host, port, username, password",
        )
    return credentials_from_dict(data, secret_arn, require_password=require_password)


def credentials_from_dict(data: Mapping[str, Any], secret_arn: str, *,
                          require_password: bool = True) -> DbCredentials:
    engine = cast(str, _text(data, "engine", secret_arn, required=True)).strip()
    family = ENGINE_FAMILIES.get(engine, engine)
    api_key = API_FAMILIES.get(family)
    if api_key is not None:
        _text(data, api_key, secret_arn, required=True)
    host = (_text(data, "host", secret_arn, required=api_key is None) or "").strip()
    username = cast(str, _text(data, "username", secret_arn, required=True))
    password = _text(data, "password", secret_arn, required=False)
    if password is None or (require_password and password == ""):
        if require_password:
            raise _fail(secret_arn, "password", "is missing",
                        "add `password` (a string) to the secret JSON")
        password = ""
    dbname = _text(data, "dbname", secret_arn, required=False) or DEFAULT_DBNAMES.get(family)
    masterarn = _text(data, "masterarn", secret_arn, required=False)
    sslmode, opt_out = _sslmode(data, secret_arn)
    return DbCredentials(
        engine=engine,
        host=host,
        port=_port(data, family, secret_arn),
        username=username,
        password=password,
        dbname=dbname,
        sslmode=sslmode,
        ssl_opt_out=opt_out,
        masterarn=masterarn,
        secret_arn=secret_arn,
        raw=dict(data),
    )
