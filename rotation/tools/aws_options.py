"""The command line's AWS habits in one place, the AWS CLI's and the SAM CLI's:

* ``--profile`` and ``--region`` become one boto3 session, and every client a command builds
  (and, for ``rotation invoke``, every client the function builds) comes from it;
* the region is ``--region``, else the region of a full ARN the command was given, else the
  profile's, ``AWS_DEFAULT_REGION`` or the config file's;
* ``--endpoint-url`` is the Secrets Manager endpoint, as ``SECRETS_MANAGER_ENDPOINT`` is for the
  function;
* the errors that mean "the command could not run" (exit 3: no credentials, no region, an unknown
  profile, an unreachable endpoint, access denied to the command's own call, throttling) are told
  apart from findings about what the command examined (exit 1).

Commands that catch AWS errors themselves (the doctor turns them into check results) learn what
happened to their own calls from :class:`CallWatch`, a botocore hook on the session.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from unittest import mock

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectionError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)

from rotation import _redact
from rotation.config import ENDPOINT

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config
    from mypy_boto3_secretsmanager import SecretsManagerClient

DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException",
    "SignatureDoesNotMatch", "AuthFailure",
})
THROTTLED_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
})
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError,
                      TokenRetrievalError, SSOError)
_UNREACHABLE_ERRORS = (ConnectionError, ReadTimeoutError, ConnectionClosedError)


@dataclass(frozen=True)
class Blocked:
    """Why a command could not run (exit 3), and what to do. ``kind``: profile, credentials,
    region, unreachable, denied or throttled."""

    kind: str
    message: str
    fix: str


def config_file() -> str:
    """The AWS config file botocore reads (``AWS_CONFIG_FILE``, else ``~/.aws/config``)."""
    return os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"


def region_from_arn(value: str | None) -> str | None:
    """``arn:PARTITION:SERVICE:REGION:ACCOUNT:...`` -> REGION; None for a name or a bare ARN."""
    if not value or not value.startswith("arn:"):
        return None
    parts = value.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


def blocked_by(exc: BaseException, *, denied_blocks: bool = True) -> Blocked | None:
    """``exc`` as a reason the command could not run, or None when it is a finding (or not an AWS
    error). ``denied_blocks``: whether AccessDenied counts (it does on the command's own calls;
    inside a step that ``invoke`` runs it is the step's failure)."""
    if isinstance(exc, ProfileNotFound):
        profile = str(getattr(exc, "kwargs", {}).get("profile", "?"))
        return Blocked("profile", f"profile {profile} not found in {config_file()}",
                       f"add it (`aws configure --profile {profile}` or `aws configure sso`), "
                       "or pass another --profile")
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return Blocked("credentials", f"no usable AWS credentials ({type(exc).__name__})",
                       "configure credentials: --profile, AWS_PROFILE, `aws configure` or "
                       "`aws sso login`")
    if isinstance(exc, NoRegionError):
        return Blocked("region", "no AWS region: none given with --region, none in an ARN, "
                                 "none in the profile or AWS_DEFAULT_REGION",
                       "pass --region (or the secret's full ARN), or set the profile's region")
    if isinstance(exc, _UNREACHABLE_ERRORS):
        return Blocked("unreachable", f"cannot reach the AWS endpoint: {type(exc).__name__}: "
                       f"{_redact.redact(str(exc))[:200]}",
                       "check the network path (in a VPC: an interface VPC endpoint or a NAT "
                       "gateway) and --endpoint-url")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return _blocked_code(str(error.get("Code", "")), exc.operation_name,
                             str(error.get("Message", "")), denied_blocks=denied_blocks)
    return None


def _blocked_code(code: str, operation: str, message: str, *,
                  denied_blocks: bool = True) -> Blocked | None:
    text = f"{operation} was refused: {code}: {_redact.redact(message)[:200]}".rstrip(": ")
    if code in DENIED_CODES and denied_blocks:
        return Blocked("denied", text, f"use credentials allowed to call {operation} "
                                       "(--profile), or ask for that permission")
    if code in THROTTLED_CODES:
        return Blocked("throttled", f"{operation} was throttled ({code}) after retries",
                       "try again in a minute; other callers share the account's request quota")
    return None


class CallWatch:
    """The first outcome of each AWS operation a session's clients made: None when it succeeded
    or failed as a finding, else why the command could not run. A botocore hook, so it also sees
    the calls of code that catches its own errors (the doctor, the function's steps)."""

    def __init__(self) -> None:
        self.first: dict[str, Blocked | None] = {}

    def attach(self, events: Any) -> None:
        events.register("after-call", self._after_call)
        events.register("after-call-error", self._after_call_error)

    def blocked(self, *operations: str) -> Blocked | None:
        """The reason, when the first call of one of ``operations`` (any, if none given) could
        not run."""
        names = operations or tuple(self.first)
        return next((b for name in names if (b := self.first.get(name)) is not None), None)

    def _after_call(self, http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        outcome = None
        if getattr(http_response, "status_code", 200) >= 300:
            error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
            outcome = _blocked_code(str(error.get("Code", "")), model.name,
                                    str(error.get("Message", "")))
        self.first.setdefault(model.name, outcome)

    def _after_call_error(self, exception: BaseException, event_name: str, **_: Any) -> None:
        self.first.setdefault(event_name.rsplit(".", 1)[-1], blocked_by(exception))


#: the tools' clients: a human waits, so short attempts and a few retries
_TOOL_CONFIG: dict[str, Any] = {"connect_timeout": 5, "read_timeout": 10,
                                "retries": {"total_max_attempts": 3, "mode": "standard"}}


def new_session(profile: str | None, region: str | None) -> boto3.Session:
    """The one session a command uses (a seam for tests)."""
    import boto3

    return boto3.Session(profile_name=profile, region_name=region)


@dataclass
class AwsOptions:
    """``--profile``, ``--region`` (already resolved from an ARN when there was one) and
    ``--endpoint-url``, and the session and clients built from them."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    watch: CallWatch = field(default_factory=CallWatch)
    _session: boto3.Session | None = None

    @classmethod
    def from_args(cls, args: Any, *arns: str | None) -> AwsOptions:
        """From the parsed command line; the region of the first full ARN in ``arns`` applies
        when ``--region`` is not given."""
        region = getattr(args, "region", None) or next(
            (r for arn in arns if (r := region_from_arn(arn))), None)
        return cls(getattr(args, "profile", None), region, getattr(args, "endpoint_url", None))

    def session(self) -> boto3.Session:
        """Raises ProfileNotFound for a profile the config file does not have."""
        if self._session is None:
            self._session = new_session(self.profile, self.region)
            self.watch.attach(self._session.events)
        return self._session

    @property
    def region_name(self) -> str | None:
        region: str | None = self.session().region_name
        return region

    def client(self, service: str, config: Config | None = None) -> Any:
        """A client for ``service`` (Lambda, CloudWatch Logs, ECS, ...), with the tools' short
        timeouts unless ``config`` says otherwise. Raises NoRegionError when no region is
        known."""
        from botocore.config import Config

        return self.session().client(service, config=config or Config(**_TOOL_CONFIG))

    def secrets_client(self) -> SecretsManagerClient:
        """Secrets Manager at ``--endpoint-url``, else ``SECRETS_MANAGER_ENDPOINT``, else the
        region's endpoint, with the function's timeouts."""
        from botocore.config import Config

        from rotation.config import Settings
        from rotation.secrets import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

        endpoint = self.endpoint_url or Settings.from_env().endpoint_url
        config = Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=READ_TIMEOUT_S,
                        retries={"total_max_attempts": 3, "mode": "standard"})
        client: SecretsManagerClient = self.session().client(
            "secretsmanager", endpoint_url=endpoint, config=config)
        return client

    @contextmanager
    def as_default(self) -> Iterator[None]:
        """For the function run in this process (``rotation invoke``): ``boto3.client()`` builds
        from this session, and ``--endpoint-url`` is the function's SECRETS_MANAGER_ENDPOINT."""
        import boto3

        env = {ENDPOINT: self.endpoint_url} if self.endpoint_url else {}
        with mock.patch.object(boto3, "DEFAULT_SESSION", self.session()), \
                mock.patch.dict(os.environ, env):
            yield


__all__ = ["AwsOptions", "Blocked", "CallWatch", "blocked_by", "config_file", "new_session",
           "region_from_arn"]
