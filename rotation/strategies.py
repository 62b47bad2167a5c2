"""Rotation strategies: which database user each step works on, and with which credential.

* ``single-user``: one user; setSecret changes its password while logged in as that user.
* ``alternating-users``: two users (``name`` and ``name_clone``); each rotation sets the password of
  the one not in use, logged in as the master user from ``masterarn`` (see issue 5).
* ``dual-password``: one user with two valid passwords, on engines that hold two (MySQL 8.0.14+,
  Redis ACL users): setSecret adds the new password beside the current one and drops the one
  retained by the rotation before, so AWSCURRENT and AWSPREVIOUS both log in after finishSecret;
  logged in as the user itself, or as the master user when the secret has ``masterarn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rotation.errors import ConfigError, SecretFormatError

if TYPE_CHECKING:
    from rotation.adapters.base import DatabaseAdapter
    from rotation.credentials import DbCredentials


PreviousUser = Callable[[], "str | None"]

#: the strategies that rotate the secret's own user (no clone)
SAME_USER_STRATEGIES = ("single-user", "dual-password")


def _no_previous() -> str | None:
    return None


def pending_username(strategy: str, current: DbCredentials, adapter: DatabaseAdapter,
                     previous: PreviousUser = _no_previous) -> str:
    """The user the new (pending) version holds."""
    if strategy in SAME_USER_STRATEGIES:
        return current.username
    base = base_username(current.username, adapter, previous)
    return base if current.username != base else adapter.clone_username(base)


def base_username(username: str, adapter: DatabaseAdapter,
                  previous: PreviousUser = _no_previous) -> str:
    """The original user's name, whether ``username`` is it or its clone.

    A name without the ``_clone`` suffix is the original. A name with it is ambiguous (the
    original may end in ``_clone`` itself, and a clone name the engine's length limit forced to be
    shortened cannot be stripped back), so only then is the AWSPREVIOUS version's user asked for
    (through ``previous``), which settles it: the two users of an alternating secret are each
    other's previous. With no AWSPREVIOUS (the first rotation) the secret's user is the original.
    Only when AWSPREVIOUS is unrelated (say, left from single-user rotation) does AWS's rule of
    stripping ``_clone`` decide.
    """
    suffix = "_clone"
    if not username.endswith(suffix):
        return username
    other = previous()
    if other is None:
        return username
    if other != username:
        if adapter.clone_username(other) == username:
            return other
        if adapter.clone_username(username) == other:
            return username
    candidate = username[: -len(suffix)]
    if candidate and adapter.clone_username(candidate) == username:
        return candidate
    return username


def pair_base(current_username: str, pending_username: str, adapter: DatabaseAdapter) -> str:
    """Of an alternating pair (current, pending), the original user: the one whose clone name
    is the other's. No AWSPREVIOUS read is needed once both names are known."""
    if adapter.clone_username(pending_username) == current_username:
        return pending_username
    return current_username


def username_limit(adapter: DatabaseAdapter, engine: str | None, strategy: str) -> int:
    """The longest user name a secret of ``engine`` may hold under ``strategy``: the adapter's
    optional ``username_limit(engine, strategy)`` (one adapter can serve engines with different
    limits: MySQL 32, MariaDB 80), else its ``max_username_length``."""
    method = getattr(adapter, "username_limit", None)
    if engine is not None and callable(method):
        return int(method(engine, strategy))
    return adapter.max_username_length


def _engine_allowing(adapter: DatabaseAdapter, engine: str, strategy: str,
                     size: int) -> tuple[str, int] | None:
    """Another engine name served by the same adapter class whose limit ``size`` fits (a
    MariaDB server behind ``"engine": "mysql"``), with that limit."""
    from rotation.adapters import available_engines

    cls = type(adapter)
    own = f"{cls.__module__}:{cls.__qualname__}"
    for name, target in sorted(available_engines().items()):
        if name != engine and target == own:
            limit = username_limit(adapter, name, strategy)
            if size <= limit:
                return name, limit
    return None


def check_username_length(username: str, adapter: DatabaseAdapter, secret_arn: str, *,
                          engine: str | None = None, strategy: str = "single-user") -> None:
    """Refuse, before anything is written, a user name the engine would refuse or truncate.

    The limit is the secret's ``engine``'s (see :func:`username_limit`); without ``engine``,
    the adapter's ``max_username_length``. When another engine of the same adapter would take
    the name, the hint says to set it (MySQL's 32 characters against MariaDB's 80)."""
    unit = getattr(adapter, "username_length_unit", "characters")
    size = len(username.encode()) if unit == "bytes" else len(username)
    limit = username_limit(adapter, engine, strategy)
    if size <= limit:
        return
    what = f"engine `{engine}`" if engine else f"the {adapter.family} engine"
    hint = "use a shorter user name"
    other = _engine_allowing(adapter, engine, strategy, size) if engine else None
    if other is not None:
        hint = (f"engine `{other[0]}` allows {other[1]}: if the database is {other[0]}, set "
                f"`engine` to `{other[0]}` in the secret; otherwise use a shorter user name")
    raise SecretFormatError(
        f"key `username` is {size} {unit} long in secret {secret_arn}; {what} allows {limit}",
        key="username", secret_arn=secret_arn, hint=hint)


def check_pending_matches(strategy: str, current: DbCredentials, pending: DbCredentials,
                          adapter: DatabaseAdapter) -> None:
    """Refuse a pending version that points somewhere else than the current one."""
    for key in ("engine", "host", "port", "dbname"):
        if getattr(current, key) != getattr(pending, key):
            raise SecretFormatError(
                f"key `{key}` of the AWSPENDING version differs from AWSCURRENT in secret "
                f"{current.secret_arn}",
                key=key, secret_arn=current.secret_arn,
                hint="a rotation never moves a credential to another server; remove the "
                     "AWSPENDING label (rotation doctor --fix) and rotate again")
    if strategy in SAME_USER_STRATEGIES:
        paired = pending.username == current.username
    else:
        paired = pending.username in (adapter.clone_username(current.username),) or \
            adapter.clone_username(pending.username) == current.username
    if not paired:
        raise SecretFormatError(
            f"key `username` of the AWSPENDING version is not the user this rotation changes in "
            f"secret {current.secret_arn}",
            key="username", secret_arn=current.secret_arn,
            hint="remove the AWSPENDING label (rotation doctor --fix) and rotate again")


def supports_dual_password(adapter: DatabaseAdapter, engine: str) -> bool:
    """Whether ``adapter`` holds two passwords per user for ``engine``: its optional
    ``supports_dual_password(engine)``; an adapter without it does not."""
    method = getattr(adapter, "supports_dual_password", None)
    return callable(method) and bool(method(engine))


def check_dual_password_support(adapter: DatabaseAdapter, engine: str, secret_arn: str) -> None:
    """The dual-password strategy needs an engine that holds two passwords per user: refuse
    any other, naming the alternatives (createSecret calls this before anything is written)."""
    if supports_dual_password(adapter, engine):
        return
    raise ConfigError(
        f"ROTATION_STRATEGY=dual-password needs an engine that keeps two passwords per user, "
        f"but key `engine` of secret {secret_arn} is `{engine}`, which cannot "
        f"({type(adapter).__name__} has no dual passwords for it)",
        hint="rotate this secret with ROTATION_STRATEGY=single-user, or alternating-users (two "
             "users; the secret then needs `masterarn`); dual passwords need MySQL 8.0.14+ "
             "(`mysql`, `aurora-mysql`) or another engine whose adapter supports them, such as "
             "`redis`")
