"""The four default steps. Orchestration only: Secrets Manager through ``secrets``, the database
through the engine's adapter. Every step is safe to run again, from any point."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from rotation import strategies
from rotation.adapters import AdapterRegistry
from rotation.adapters.base import DatabaseAdapter, DatabaseSession
from rotation.config import Settings
from rotation.credentials import DbCredentials, credentials_from_dict, parse_secret
from rotation.errors import (
    AwsError,
    ConcurrentUpdateError,
    ConfigError,
    PasswordRefusedError,
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
    parsed_engine: str | None = None  # set when a version is parsed

    @property
    def engine(self) -> str:
        """The secret's engine, for logs and metrics: from a parsed version, else from a value
        this container already holds (no call is made for it), else "unknown"."""
        if self.parsed_engine is not None:
            return self.parsed_engine
        for version_id in (self.token, self.state.version_with(CURRENT)):
            value = self.secrets.cached(self.arn, version_id)
            if value is not None:
                try:
                    self.parsed_engine = parse_secret(value, self.arn).engine
                except SecretFormatError:
                    continue
                return self.parsed_engine
        return "unknown"

    @property
    def arn(self) -> str:
        return self.state.arn

    @property
    def token(self) -> str:
        return self.event.client_request_token

    def credentials(self, version_id: str, stage: str) -> DbCredentials:
        value = self.secrets.get_value(self.arn, version_id, stage)
        credentials = parse_secret(value, self.arn)
        self.parsed_engine = credentials.engine
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
        try:
            return self.adapters.get(credentials.engine)
        except UnsupportedEngineError as exc:
            raise type(exc)(f"{exc.message} (secret {self.arn})", hint=exc.hint) from None

    def connect(self, adapter: DatabaseAdapter, credentials: DbCredentials) -> DatabaseSession:
        """Log in; every connection without TLS (the master's included) is logged as a
        warning."""
        if credentials.sslmode == "disable":
            label = "the master secret" if credentials.secret_arn != self.arn else "the secret"
            logger.warning(f"TLS is disabled by {label} (`ssl`: false or `sslmode`: disable) "
                           f"for {credentials.host}:{credentials.port}; the password travels "
                           "in plaintext", extra={"cause": "tls",
                                                  "username": credentials.username})
        return adapter.connect(credentials)

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
    elif ctx.settings.strategy == "dual-password":
        # an engine with one password per user fails here, before any write
        strategies.check_dual_password_support(adapter, current.engine, ctx.arn)
    strategies.check_username_length(current.username, adapter, ctx.arn,
                                     engine=current.engine, strategy=ctx.settings.strategy)
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
    elif ctx.settings.strategy == "dual-password":
        _set_dual_password(ctx, adapter, current, pending)
    else:
        _set_single_user(ctx, adapter, current, pending)


def _set_single_user(ctx: StepContext, adapter: DatabaseAdapter, current: DbCredentials,
                     pending: DbCredentials) -> None:
    # Clean path: one login, with the credential in use. No deliberate failed login.
    try:
        with ctx.connect(adapter, current) as session:
            session.set_password(pending.username, pending.password)
        logger.info("setSecret: password set, logged in with AWSCURRENT")
        return
    except PasswordRefusedError:
        # Only a wrong password makes another version's password worth a try: a locked account
        # or a role without LOGIN is refused whatever the password, and every extra failed
        # login counts towards lock-outs (FAILED_LOGIN_ATTEMPTS).
        logger.warning("setSecret: AWSCURRENT's password was refused; checking whether "
                       "AWSPENDING is set")
    # Fallbacks, only to detect "already set" (a retry) or recover through AWSPREVIOUS.
    try:
        with ctx.connect(adapter, pending) as session:
            session.ping()
        ctx.outcome = "already set"
        logger.info("setSecret: AWSPENDING already logs in; nothing to do")
        return
    except PasswordRefusedError:
        pass
    previous_id = ctx.state.version_with(PREVIOUS)
    if previous_id and previous_id != ctx.token:
        previous = ctx.credentials(previous_id, PREVIOUS)
        if previous.username == pending.username:
            try:
                with ctx.connect(adapter, previous) as session:
                    session.set_password(pending.username, pending.password)
                ctx.outcome = "set via AWSPREVIOUS"
                logger.warning("setSecret: password set, logged in with AWSPREVIOUS")
                return
            except PasswordRefusedError:
                pass
    raise _no_version_logs_in(ctx, current)


def _no_version_logs_in(ctx: StepContext, current: DbCredentials) -> PasswordRefusedError:
    return PasswordRefusedError(
        f"none of the AWSCURRENT, AWSPENDING or AWSPREVIOUS credentials of secret {ctx.arn} "
        f"logs in as {current.username!r} on {current.host}:{current.port}",
        hint="the database password was changed outside rotation: set it to the AWSCURRENT "
             "value (or PutSecretValue the working one), then rotate again")


def _set_alternating(ctx: StepContext, adapter: DatabaseAdapter, current: DbCredentials,
                     pending: DbCredentials) -> None:
    master = ctx.master(current)
    base = strategies.pair_base(current.username, pending.username, adapter)
    with ctx.connect(adapter, master) as session:
        if pending.username == base:
            session.set_password(base, pending.password)
        else:
            session.sync_clone(base, pending.username, pending.password)
    logger.info("setSecret: pending user prepared by the master user",
                extra={"username": pending.username})


def _set_dual_password(ctx: StepContext, adapter: DatabaseAdapter, current: DbCredentials,
                       pending: DbCredentials) -> None:
    """Dual passwords: afterwards AWSPENDING's and AWSCURRENT's passwords both log in, and the
    one the rotation before retained is dropped. ``add_password`` is idempotent and never drops
    ``keep`` (AWSCURRENT's password), so a retry from any point keeps the password in use.

    With ``masterarn`` in the secret the master user changes the user (MySQL accounts without
    APPLICATION_PASSWORD_ADMIN); otherwise the user changes itself, logged in with AWSCURRENT
    (one login, no deliberate failed one). Only when the server refuses AWSCURRENT's password
    are AWSPENDING and AWSPREVIOUS tried (a completed setSecret leaves AWSCURRENT working, so
    something else changed the password): whichever logs in adds the new password and makes
    AWSCURRENT's work again."""
    strategies.check_dual_password_support(adapter, current.engine, ctx.arn)
    if current.masterarn:
        master = ctx.master(current)
        with ctx.connect(adapter, master) as session:
            _add_password(session, adapter, pending, keep=current)
        logger.info("setSecret: the new password was added beside the current one by the "
                    "master user", extra={"username": pending.username})
        return
    try:
        with ctx.connect(adapter, current) as session:
            _add_password(session, adapter, pending, keep=current)
        logger.info("setSecret: the new password was added beside the current one, logged in "
                    "with AWSCURRENT")
        return
    except PasswordRefusedError:
        logger.warning("setSecret: AWSCURRENT's password was refused; trying AWSPENDING, then "
                       "AWSPREVIOUS")
    fallbacks = [(PENDING, pending)]
    previous_id = ctx.state.version_with(PREVIOUS)
    if previous_id and previous_id != ctx.token:
        previous = ctx.credentials(previous_id, PREVIOUS)
        if previous.username == pending.username:
            fallbacks.append((PREVIOUS, previous))
    for label, credentials in fallbacks:
        try:
            with ctx.connect(adapter, credentials) as session:
                _add_password(session, adapter, pending, keep=current)
        except PasswordRefusedError:
            continue
        ctx.outcome = f"set via {label}"
        logger.warning(f"setSecret: logged in with {label}; the new password was added and "
                       "AWSCURRENT's works again")
        return
    raise _no_version_logs_in(ctx, current)


def _add_password(session: DatabaseSession, adapter: DatabaseAdapter, pending: DbCredentials,
                  *, keep: DbCredentials) -> None:
    add = getattr(session, "add_password", None)
    if not callable(add):
        raise ConfigError(
            f"{type(adapter).__name__} says it supports dual passwords, but its sessions have "
            "no add_password method",
            hint="fix the adapter (see docs/writing-an-adapter.md), or use ROTATION_STRATEGY="
                 "single-user or alternating-users")
    add(pending.username, pending.password, keep.password)


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
    with ctx.connect(ctx.adapter(credentials), credentials) as session:
        session.ping()
    logger.info(f"testSecret: {label} logs in", extra={"username": credentials.username})


def finish_secret(ctx: StepContext) -> None:
    """Move AWSCURRENT to the new version, compare-and-set against the version that held it.
    Only the label moves, whatever the strategy: with dual passwords the older password is
    dropped by the next rotation's setSecret, so AWSPREVIOUS keeps logging in until then."""
    current_id = ctx.state.version_with(CURRENT)
    pending = _pending_with_value(ctx)
    source = ctx.secrets.sources.get((ctx.arn, ctx.token))
    if source is None:
        _check_source_cold(ctx, current_id, pending)
    elif current_id != source:
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
    logger.info("finishSecret: AWSCURRENT moved to the new version",
                extra={"previous_version": (current_id or "")[:8]})


def _pending_with_value(ctx: StepContext) -> DbCredentials:
    """The AWSPENDING credential; refuses a version without a value (a replayed event, or a
    custom createSecret that stored nothing): AWSCURRENT must never move to it."""
    try:
        return ctx.pending()
    except SecretNotFoundError:
        raise SecretFormatError(
            f"version {ctx.event.token_prefix}... (AWSPENDING) of secret {ctx.arn} holds no "
            "value; not moving AWSCURRENT to it", secret_arn=ctx.arn,
            hint="run the rotation from createSecret (a custom createSecret must store the new "
                 "credential with PutSecretValue), or remove the AWSPENDING label with "
                 "`rotation doctor --fix`") from None


def _check_source_cold(ctx: StepContext, current_id: str | None,
                       pending: DbCredentials) -> None:
    """finishSecret in a container that did not see setSecret: is AWSCURRENT still the version
    the rotation worked from? One ListSecretVersionIds answers it on the clean path (the
    current version predates the pending one). A newer AWSCURRENT was written by someone else
    during the rotation: moving is safe only if it points at the same place and the pending
    credential still logs in (setSecret ran after that write); otherwise the other writer
    reset the password, and its version stays AWSCURRENT."""
    if current_id is None:
        return
    dates = ctx.secrets.version_dates(ctx.arn)
    current_date, pending_date = dates.get(current_id), dates.get(ctx.token)
    if current_date is not None and pending_date is not None and current_date < pending_date:
        return
    current = ctx.credentials(current_id, CURRENT)
    adapter = ctx.adapter(pending)
    strategies.check_pending_matches(ctx.settings.strategy, current, pending, adapter)
    logger.warning(f"finishSecret: AWSCURRENT (version {current_id[:8]}) was written after this "
                   "rotation began; checking that the pending credential still logs in")
    try:
        with ctx.connect(adapter, pending) as session:
            session.ping()
    except PasswordRefusedError:
        raise ConcurrentUpdateError(
            f"AWSCURRENT of secret {ctx.arn} is version {current_id[:8]}, written after this "
            "rotation began, and the pending password no longer logs in (the password was "
            "reset); not overwriting it",
            hint="Secrets Manager retries the rotation from the new AWSCURRENT; if it keeps "
                 "failing, check who writes the secret and run `rotation doctor`") from None


DEFAULT_STEPS: dict[str, StepFunction] = {
    "createSecret": create_secret,
    "setSecret": set_secret,
    "testSecret": test_secret,
    "finishSecret": finish_secret,
}

test_secret.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported
