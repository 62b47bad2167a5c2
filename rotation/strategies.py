"""Rotation strategies: which database user each step works on, and with which credential.

* ``single-user``: one user; setSecret changes its password while logged in as that user.
* ``alternating-users``: two users (``name`` and ``name_clone``); each rotation sets the password of
  the one not in use, logged in as the master user from ``masterarn`` (see issue 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rotation.errors import SecretFormatError

if TYPE_CHECKING:
    from rotation.adapters.base import DatabaseAdapter
    from rotation.credentials import DbCredentials


def pending_username(strategy: str, current: DbCredentials, adapter: DatabaseAdapter) -> str:
    """The user the new (pending) version holds."""
    if strategy == "single-user":
        return current.username
    clone = adapter.clone_username(base_username(current.username, adapter))
    return base_username(current.username, adapter) if current.username == clone else clone


def base_username(username: str, adapter: DatabaseAdapter) -> str:
    """The original user's name, whether ``username`` is it or its clone."""
    suffix = "_clone"
    if username.endswith(suffix):
        candidate = username[: -len(suffix)]
        if candidate and adapter.clone_username(candidate) == username:
            return candidate
    return username


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
    expected = pending_username(strategy, current, adapter)
    if pending.username not in (expected, current.username):
        raise SecretFormatError(
            f"key `username` of the AWSPENDING version is not the user this rotation changes in "
            f"secret {current.secret_arn}",
            key="username", secret_arn=current.secret_arn,
            hint="remove the AWSPENDING label (rotation doctor --fix) and rotate again")
