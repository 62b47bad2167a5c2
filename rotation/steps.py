"""The four default steps. Orchestration only: Secrets Manager through ``secrets``, the database
through the engine's adapter. Every step is safe to run again, from any point."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from rotation import strategies
from rotation.adapters import AdapterRegistry
from rotation.adapters.base import DatabaseAdapter
from rotation.config import Settings
from rotation.credentials import DbCredentials, credentials_from_dict, parse_secret
from rotation.errors import (
    AwsError,
    ConcurrentUpdateError,
    LoginError,
    SecretFormatError,
    UnsupportedEngineError,
)
from rotation.event import RotationEvent
from rotation.logs import logger
from rotation.password import generate_password
from rotation.secrets import (
    CURRENT,
    PENDING,
    PREVIOUS,
    SecretNotFoundError,
    SecretsManager,
    SecretState,
    VersionExistsError,
)


@dataclass
class StepContext:
    """Everything a step needs, for one invocation."""

    event: RotationEvent
    state: SecretState
    settings: Settings
    secrets: SecretsManager
    adapters: AdapterRegistry
    outcome: str = "done"
    engine: str = "unknown"  # known once a version was parsed; a metrics dimension

    @property
    def arn(self) -> str:
        return self.state.arn

    @property
    def token(self) -> str:
        return self.event.client_request_token

    def credentials(self, version_id: str, stage: str) -> DbCredentials:
        value = self.secrets.get_value(self.arn, version_id, stage)
        credentials = parse_secret(value, self.arn)
        self.engine = credentials.engine
        return credentials

    def current(self) -> DbCredentials:
        version_id = self.state.version_with(CURRENT)
        if version_id is None:
            raise SecretFormatError(f"secret {self.arn} has no AWSCURRENT version",
                                    secret_arn=self.arn,
                                    hint="store the credential with PutSecretValue first")
        self.secrets.sources[(self.arn, self.token)] = version_id
        return self.credentials(version_id, CURRENT)

    def pending(self) -> DbCredentials:
        return self.credentials(self.token, PENDING)

    def previous_username(self) -> str | None:
        """AWSPREVIOUS's user name, or None; read only when a strategy needs it."""
        version_id = self.state.version_with(PREVIOUS)
        if version_id is None or version_id == self.token:
            return None
        try:
            return self.credentials(version_id, PREVIOUS).username
        except (SecretFormatError, SecretNotFoundError):
            return None

    def adapter(self, credentials: DbCredentials) -> DatabaseAdapter:
        if credentials.ssl_opt_out:
            logger.warning(f"TLS is disabled by the secret (`ssl`: false or `sslmode`: disable) "
                           f"for {credentials.host}:{credentials.port}; the password travels "
                           "in plaintext", extra={"cause": "tls"})
        try:
            return self.adapters.get(credentials.engine)
        except UnsupportedEngineError as exc:
            raise type(exc)(f"{exc.message} (secret {self.arn})", hint=exc.hint) from None

    def master(self, user: DbCredentials) -> DbCredentials:
        """The master credential named by ``masterarn``: read-only to us. RDS's managed master
        secret holds only username and password; the rest comes from the user's secret."""
        masterarn = self.masterarn(user)
        try:
            master_arn, raw = self.secrets.get_current(masterarn)
        except SecretNotFoundError:
            raise SecretFormatError(
                f"key `masterarn` of secret {self.arn} names {masterarn}, which does not exist",
                key="masterarn", secret_arn=self.arn,
                hint="set `masterarn` to the ARN of the master user's secret") from None
        except AwsError as exc:
            raise type(exc)(f"cannot read the master secret {masterarn} named by `masterarn` in "
                            f"secret {self.arn}: {exc.message}", code=exc.code,
                            hint=exc.hint or "check `masterarn` and the function's read access "
                                             "to that secret") from None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise SecretFormatError(f"the master secret {master_arn} is not a JSON object",
                                    key="masterarn", secret_arn=self.arn,
                                    hint="the master secret needs username and password")
        for key in ("username", "password"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise SecretFormatError(
                    f"key `{key}` is missing in the master secret {master_arn} (named by "
                    f"`masterarn` in secret {self.arn})", key=key, secret_arn=master_arn,
                    hint="the master secret needs the master user's username and password")
        # Only where to connect comes from the user's secret, when the master secret (RDS's
        # managed master secret holds just username and password) does not say.
        where = {k: user.raw[k] for k in _CONNECTION_KEYS if k in user.raw}
        merged = {**where, **{k: data[k] for k in (*_CONNECTION_KEYS, "username", "password")
                              if k in data}}
        return credentials_from_dict(merged, master_arn)

    def masterarn(self, user: DbCredentials) -> str:
        if not user.masterarn:
            raise SecretFormatError(
                f"key `masterarn` is missing in secret {self.arn}", key="masterarn",
                secret_arn=self.arn,
                hint="alternating users need `masterarn`: the ARN of a secret holding a user "
                     "that can create users and grant privileges")
        return user.masterarn


_CONNECTION_KEYS = ("engine", "host", "port", "dbname", "ssl", "sslmode")

StepFunction = Callable[[StepContext], None]


def create_secret(ctx: StepContext) -> None:
    """Store a new credential as AWSPENDING. An existing pending value is kept."""
    current = ctx.current()
    adapter = ctx.adapter(current)  # an unsupported engine fails here, before any write
    if ctx.settings.strategy == "alternating-users":
        ctx.masterarn(current)  # a missing key fails here, before any write
    strategies.check_username_length(current.username, adapter, ctx.arn)
    username = strategies.pending_username(ctx.settings.strategy, current, adapter,
                                           ctx.previous_username)
    pending = current.with_user(username, generate_password(ctx.settings.password_policy))
    # Put first: Secrets Manager refuses to change an existing version, so a retry keeps the
    # value an earlier attempt stored (and this saves a GetSecretValue on the clean path).
    try:
        ctx.secrets.put_pending(ctx.arn, ctx.token, json.dumps(pending.to_secret_dict()),
                                ctx.event.rotation_token)
    except VersionExistsError:
        kept = ctx.pending()  # validates the stored value too
        ctx.outcome = "kept"
        logger.info("createSecret: AWSPENDING already holds a value; kept it",
                    extra={"username": kept.username})
        return
    logger.info("createSecret: stored a new AWSPENDING version", extra={"username": username})


def set_secret(ctx: StepContext) -> None:
    """Make the database accept the pending credential."""
    current = ctx.current()
    pending = ctx.pending()
    adapter = ctx.adapter(current)
    strategies.check_pending_matches(ctx.settings.strategy, current, pending, adapter)
    if ctx.settings.strategy == "alternating-users":
        _set_alternating(ctx, adapter, current, pending)
    else:
        _set_single_user(ctx, adapter, current, pending)


def _set_single_user(ctx: StepContext, adapter: DatabaseAdapter, current: DbCredentials,
                     pending: DbCredentials) -> None:
    # Clean path: one login, with the credential in use. No deliberate failed login.
    try:
        with adapter.connect(current) as session:
            session.set_password(pending.username, pending.password)
        logger.info("setSecret: password set, logged in with AWSCURRENT")
        return
    except LoginError:
        logger.warning("setSecret: AWSCURRENT was refused; checking whether AWSPENDING is set")
    # Fallbacks, only to detect "already set" (a retry) or recover through AWSPREVIOUS.
    try:
        with adapter.connect(pending) as session:
            session.ping()
        ctx.outcome = "already set"
        logger.info("setSecret: AWSPENDING already logs in; nothing to do")
        return
    except LoginError:
        pass
    previous_id = ctx.state.version_with(PREVIOUS)
    if previous_id and previous_id != ctx.token:
        previous = ctx.credentials(previous_id, PREVIOUS)
        if previous.username == pending.username:
            try:
                with adapter.connect(previous) as session:
                    session.set_password(pending.username, pending.password)
                ctx.outcome = "set via AWSPREVIOUS"
                logger.warning("setSecret: password set, logged in with AWSPREVIOUS")
                return
            except LoginError:
                pass
    raise LoginError(
        f"none of the AWSCURRENT, AWSPENDING or AWSPREVIOUS credentials of secret {ctx.arn} "
        f"logs in as {current.username!r} on {current.host}:{current.port}",
        hint="the database password was changed outside rotation: set it to the AWSCURRENT "
             "value (or PutSecretValue the working one), then rotate again")


def _set_alternating(ctx: StepContext, adapter: DatabaseAdapter, current: DbCredentials,
                     pending: DbCredentials) -> None:
    master = ctx.master(current)
    base = strategies.pair_base(current.username, pending.username, adapter)
    with adapter.connect(master) as session:
        if pending.username == base:
            session.set_password(base, pending.password)
        else:
            session.sync_clone(base, pending.username, pending.password)
    logger.info("setSecret: pending user prepared by the master user",
                extra={"username": pending.username})


def test_secret(ctx: StepContext) -> None:
    """Log in with the pending credential and run a query."""
    try:
        credentials, label = ctx.pending(), PENDING
    except SecretNotFoundError:
        # RotateImmediately=false: the service checks the setup with a value-less AWSPENDING.
        credentials, label = ctx.current(), CURRENT
        ctx.outcome = "tested AWSCURRENT"
        logger.info("testSecret: AWSPENDING holds no value (rotation configuration check); "
                    "testing AWSCURRENT instead")
    with ctx.adapter(credentials).connect(credentials) as session:
        session.ping()
    logger.info(f"testSecret: {label} logs in", extra={"username": credentials.username})


def finish_secret(ctx: StepContext) -> None:
    """Move AWSCURRENT to the new version, compare-and-set against the version that held it."""
    current_id = ctx.state.version_with(CURRENT)
    source = ctx.secrets.sources.get((ctx.arn, ctx.token))
    if source is not None and current_id != source:
        # Another writer made its own version AWSCURRENT after this rotation set and tested the
        # new password against the previous one: moving the label now would replace a credential
        # nobody tested. Secrets Manager retries the rotation, which then starts from it.
        raise ConcurrentUpdateError(
            f"AWSCURRENT of secret {ctx.arn} moved to version {(current_id or '')[:8]} while "
            f"this rotation worked from version {source[:8]}; not overwriting it",
            hint="Secrets Manager retries the rotation from the new AWSCURRENT; if it keeps "
                 "failing, check who writes the secret and run `rotation doctor`")
    try:
        ctx.secrets.move_stage(ctx.arn, CURRENT, to_version=ctx.token, from_version=current_id)
    except AwsError as exc:
        if exc.code != "InvalidParameterException":
            raise
        # The label is not where we saw it. Either our own call went through and its response was
        # lost (botocore retried it), or another writer moved AWSCURRENT: look again.
        if CURRENT in ctx.secrets.describe(ctx.arn).versions.get(ctx.token, frozenset()):
            ctx.outcome = "done (confirmed after a lost response)"
            logger.info("finishSecret: AWSCURRENT is on the new version (an earlier attempt of "
                        "this call went through)")
            return
        raise ConcurrentUpdateError(
            f"AWSCURRENT of secret {ctx.arn} moved while finishSecret ran; not overwriting it",
            hint="another writer changed the secret; check its versions, then rotate again",
        ) from None
    if ctx.settings.mysql_dual_password:
        pending = ctx.pending()
        with ctx.adapter(pending).connect(pending) as session:
            session.discard_old_password(pending.username)
    logger.info("finishSecret: AWSCURRENT moved to the new version",
                extra={"previous_version": (current_id or "")[:8]})


DEFAULT_STEPS: dict[str, StepFunction] = {
    "createSecret": create_secret,
    "setSecret": set_secret,
    "testSecret": test_secret,
    "finishSecret": finish_secret,
}

test_secret.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported
