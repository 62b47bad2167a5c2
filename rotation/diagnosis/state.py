"""What the checks share: :class:`Doctor` holds the inputs and the facts earlier checks
established (the secret's description, its current credential, the login outcome), so nothing
is fetched twice and one root cause is reported once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rotation.adapters import AdapterRegistry
from rotation.adapters.base import DatabaseAdapter
from rotation.config import Settings, Strategy
from rotation.credentials import DbCredentials
from rotation.diagnosis.report import CheckResult
from rotation.diagnosis.wire import WireAnswer
from rotation.errors import RotationError
from rotation.event import RotationEvent
from rotation.secrets import SecretsManager, SecretState
from rotation.steps import StepContext


@dataclass
class LoginOutcome:
    """The result of one login attempt through the engine's adapter."""

    error: RotationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Diagnosis:
    """Why the current credential's login failed, and which check reports it (``db-tls`` or
    ``db-login``). ``tls_settled``: the server answered after the TLS handshake (so TLS itself
    can be judged)."""

    check: Literal["db-tls", "db-login"]
    detail: str
    fix: str
    tls_settled: bool = False


@dataclass
class Doctor:
    """What the checks share: inputs, and the facts earlier checks established."""

    secrets: SecretsManager
    secret_id: str
    settings: Settings
    adapters: AdapterRegistry
    timeout: float = 5.0
    strategy_override: str | None = None
    #: where ``strategy_override`` comes from, as the verdicts name it
    strategy_override_source: str = "given"
    master_secret_id: str | None = None
    #: the rotation function's environment variables, when known (its ROTATION_STRATEGY)
    function_env: Mapping[str, str] | None = None
    #: the checks run inside the rotation function (a remote diagnosis), not on the caller's
    #: machine: the verdicts speak of the function's network and role
    remote: bool = False
    #: the ARN of the function the checks run in (remote): rotation must name it
    this_function: str | None = None
    # facts
    description: dict[str, Any] | None = None
    describe_error: CheckResult | None = None
    state: SecretState | None = None
    current: DbCredentials | None = None
    current_error: RotationError | None = None
    adapter: DatabaseAdapter | None = None
    strategy: Strategy = "single-user"
    strategy_source: str = "default"
    tcp_ok: bool | None = None
    wire: WireAnswer | None = None
    #: the database check that failed on the root cause ("db-network", "db-protocol", "db-tls"):
    #: the checks after it that need the database skip, naming it, and log in no more
    db_blocker: str | None = None
    login: LoginOutcome | None = None
    diagnosis: Diagnosis | None = None
    #: a secret that disables TLS, refused by MySQL/MariaDB: the same login over TLS
    tls_retry: LoginOutcome | None = None
    masters: dict[str, DbCredentials | RotationError] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return self.state.arn if self.state else self.secret_id

    @property
    def here(self) -> str:
        """Where the checks run, for the verdicts."""
        return "the rotation function" if self.remote else "this machine"

    @property
    def heres(self) -> str:
        return f"{self.here}'s"

    def step_context(self, token: str) -> StepContext:
        """The steps' own view of the secret, to read versions and the master exactly as the
        function does (``token`` plays the event's ClientRequestToken)."""
        assert self.state is not None
        event = RotationEvent("testSecret", self.arn, token)
        settings = replace(self.settings, strategy=self.strategy)
        return StepContext(event, self.state, settings, self.secrets, self.adapters)

    def try_login(self, credentials: DbCredentials) -> LoginOutcome:
        try:
            adapter = self.adapters.get(credentials.engine)
            with adapter.connect(credentials) as session:
                session.ping()
        except RotationError as exc:
            return LoginOutcome(exc)
        return LoginOutcome()


Check = Callable[[Doctor], CheckResult]
