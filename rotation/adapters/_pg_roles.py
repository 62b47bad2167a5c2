"""Alternating users on PostgreSQL: make the clone role match its source role.

:meth:`PostgresSession.sync_clone <rotation.adapters.postgres.PostgresSession.sync_clone>` reads
both roles and the master user's own privileges (:func:`read_plan`), plans the statements that
make the clone match (:func:`make_plan`, pure), checks the master may run every one of them
(:func:`privilege_needs`, pure) and raises :class:`~rotation.errors.PrivilegeError` naming what is
missing before anything changes; the session then runs the statements in one transaction.

What "match" means (docs/migration.md says it for users):

* Attributes SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS, CONNECTION LIMIT and VALID
  UNTIL are copied. VALID UNTIL ends the role's access (rotation never moves it, so it is no
  password age): a clone that outlived it would be a way around it. LOGIN and INHERIT are always
  on: the clone must log in, and an INHERIT member of the source holds exactly the source's
  privileges even when the source is NOINHERIT (inheritance stops at a NOINHERIT role, so it does
  not reach the source's own memberships), while a NOINHERIT clone would lose what is granted to
  the source itself.
* Memberships: the clone is a member of the source, as in AWS's sample (grants made to the source
  later reach the clone), without ADMIN OPTION (the source cannot administer itself either; admin
  options the source holds on other roles reach the clone through the membership), and of no
  other role.
* Per-role settings: the clone's ``pg_db_role_setting`` rows, everywhere and per database, equal
  the source's, so ``ALTER ROLE app SET role = 'app_owner'`` (objects either user creates are
  owned by ``app_owner``) holds for the clone too.

Left alone: privileges granted on objects directly to the clone, objects it owns, default
privileges (``ALTER DEFAULT PRIVILEGES FOR ROLE``) and roles that are members of the clone. They
live in every database's catalogs (the master is connected to one), and removing them means
revoking or dropping user data: grant to the source role (or an owner role) instead.

Statements are composed with :mod:`psycopg.sql`; setting values are copied as pg_dump copies them.
Version rules: PostgreSQL 16 changed what CREATEROLE allows (ADMIN OPTION on the roles changed;
CREATEDB, REPLICATION, BYPASSRLS only by a master holding them) and records membership grants per
grantor (revoked here ``GRANTED BY`` their grantor).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from psycopg import sql

from rotation.errors import DatabaseError, PrivilegeError, SecretFormatError

Execute = Callable[[sql.Composed | sql.SQL], list[tuple[Any, ...]]]
SettingKey = tuple[str | None, str]  # (database, or None for every database; parameter name)

log = logging.getLogger(__name__)

PG15 = 150000
PG16 = 160000

# Parameters whose list elements the server quotes as identifiers (GUC_LIST_QUOTE): a value
# passed back as one literal would become one quoted element. pg_dump keeps the same list
# (variable_is_guc_list_quote in src/bin/pg_dump/dumputils.c).
LIST_QUOTE_PARAMETERS = frozenset({
    "local_preload_libraries", "search_path", "session_preload_libraries",
    "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"})


@dataclass(frozen=True)
class Attributes:
    """The role attributes the clone copies; the defaults are what ``CREATE ROLE`` gives."""

    superuser: bool = False
    createdb: bool = False
    createrole: bool = False
    inherit: bool = True
    replication: bool = False
    bypassrls: bool = False
    connection_limit: int = -1
    valid_until: str = "infinity"  # as this session prints it; "infinity" when unset


# attribute -> (clause when true, clause when false); CONNECTION LIMIT and VALID UNTIL take a value
_FLAGS = {"superuser": ("SUPERUSER", "NOSUPERUSER"), "createdb": ("CREATEDB", "NOCREATEDB"),
          "createrole": ("CREATEROLE", "NOCREATEROLE"), "inherit": ("INHERIT", "NOINHERIT"),
          "replication": ("REPLICATION", "NOREPLICATION"),
          "bypassrls": ("BYPASSRLS", "NOBYPASSRLS")}


@dataclass(frozen=True)
class Role:
    name: str
    attributes: Attributes
    expired: bool = False  # VALID UNTIL is in the past


@dataclass(frozen=True)
class Master:
    """The logged-in (master) user and the server version."""

    name: str
    superuser: bool = False
    createrole: bool = False
    createdb: bool = False
    replication: bool = False
    bypassrls: bool = False
    server_version: int = PG15


@dataclass(frozen=True)
class Membership:
    """A row of pg_auth_members with the clone as member (``inherit``/``set``: PG16+)."""

    role: str
    role_superuser: bool = False
    admin: bool = False
    grantor: str | None = None
    inherit: bool = True
    set: bool = True


@dataclass(frozen=True)
class Need:
    """A privilege the master lacks (``privilege``), and which change needs it (``reason``)."""

    privilege: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """What makes the clone match; :meth:`statements` renders it."""

    source: Role
    clone: str
    existing: Role | None  # None: the clone does not exist yet
    attribute_changes: tuple[str, ...]  # Attributes field names to set to the source's
    desired: Attributes
    grant_source: bool
    revoke_admin: tuple[Membership, ...]  # memberships in the source held WITH ADMIN OPTION
    revoke: tuple[Membership, ...]  # memberships in any other role
    set_settings: tuple[tuple[SettingKey, str], ...]
    reset_settings: tuple[SettingKey, ...]
    server_version: int = PG15

    @property
    def changes_privileges(self) -> bool:
        """Whether anything beyond the password changes."""
        return bool(self.existing is None or self.attribute_changes or self.grant_source
                    or self.revoke_admin or self.revoke or self.set_settings
                    or self.reset_settings)

    def statements(self, verifier: sql.Composable) -> list[sql.Composed]:
        """Every statement, in order; ``verifier`` is the clone's SCRAM verifier literal."""
        clone = sql.Identifier(self.clone)
        clauses = [_clause(name, self.desired) for name in self.attribute_changes]
        out: list[sql.Composed] = []
        if self.existing is None:
            out.append(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}{}").format(
                clone, verifier, sql.SQL("").join(sql.SQL(" ") + c for c in clauses)))
        else:
            out.append(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(clone, verifier))
            if clauses:
                out.append(sql.SQL("ALTER ROLE {} WITH {}").format(clone,
                                                                   sql.SQL(" ").join(clauses)))
        source = sql.Identifier(self.source.name)
        per_grantor = self.server_version >= PG16
        for row in self.revoke_admin:
            out.append(sql.SQL("REVOKE ADMIN OPTION FOR {} FROM {}{}").format(
                source, clone, _granted_by(row, per_grantor)))
        for row in self.revoke:
            out.append(sql.SQL("REVOKE {} FROM {}{}").format(
                sql.Identifier(row.role), clone, _granted_by(row, per_grantor)))
        if self.grant_source:
            options = sql.SQL(" WITH INHERIT TRUE, SET TRUE" if per_grantor else "")
            out.append(sql.SQL("GRANT {} TO {}{}").format(source, clone, options))
        for (database, name), value in self.set_settings:
            out.append(sql.SQL("ALTER ROLE {}{} SET {} = {}").format(
                clone, _in_database(database), _parameter(name), setting_value(name, value)))
        for database, name in self.reset_settings:
            out.append(sql.SQL("ALTER ROLE {}{} RESET {}").format(
                clone, _in_database(database), _parameter(name)))
        return out

    def summary(self) -> dict[str, Any]:
        """What changes, by name only (values can be sensitive; no password or verifier)."""
        return {
            "created": self.existing is None,
            "attributes": [name.replace("_", " ").upper() for name in self.attribute_changes],
            "granted": [self.source.name] if self.grant_source else [],
            "revoked": [row.role for row in self.revoke]
                       + [f"ADMIN OPTION FOR {row.role}" for row in self.revoke_admin],
            "settings_set": sorted({name for (_db, name), _v in self.set_settings}),
            "settings_reset": sorted({name for _db, name in self.reset_settings}),
        }


def _clause(name: str, attributes: Attributes) -> sql.Composable:
    value = getattr(attributes, name)
    if name == "connection_limit":
        return sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(value)))
    if name == "valid_until":
        return sql.SQL("VALID UNTIL {}").format(sql.Literal(str(value)))
    return sql.SQL(_FLAGS[name][0 if value else 1])


def _granted_by(row: Membership, per_grantor: bool) -> sql.Composable:
    # PG16+ keeps one grant per grantor, and REVOKE without GRANTED BY removes only the current
    # user's; PG15 and older keep one grant per pair and accept GRANTED BY from superusers only.
    if per_grantor and row.grantor:
        return sql.SQL(" GRANTED BY {}").format(sql.Identifier(row.grantor))
    return sql.SQL("")


def _in_database(database: str | None) -> sql.Composable:
    if database is None:
        return sql.SQL("")
    return sql.SQL(" IN DATABASE {}").format(sql.Identifier(database))


def _parameter(name: str) -> sql.Composable:
    # "a.b" is a custom parameter: two identifiers joined by a dot, which the server joins back.
    return sql.Identifier(*name.split("."))


def split_list(text: str) -> list[str] | None:
    """The elements of a GUC_LIST_QUOTE value as the server stores it (``"my schema", public``),
    or None when it does not parse. A port of SplitGUCList (src/fe_utils/string_utils.c): quoted
    elements keep their case and collapse doubled quotes; unquoted ones end at a comma or blank."""
    out: list[str] = []
    i, n = 0, len(text)

    def skip_blanks(at: int) -> int:
        while at < n and text[at].isspace():
            at += 1
        return at

    i = skip_blanks(i)
    if i == n:
        return out
    while True:
        if text[i] == '"':
            parts, i = [], i + 1
            while True:
                end = text.find('"', i)
                if end < 0:
                    return None
                parts.append(text[i:end])
                if text[end + 1:end + 2] != '"':
                    i = end + 1
                    break
                parts.append('"')
                i = end + 2
            out.append("".join(parts))
        else:
            start = i
            while i < n and text[i] != "," and not text[i].isspace():
                i += 1
            if i == start:
                return None
            out.append(text[start:i])
        i = skip_blanks(i)
        if i == n:
            return out
        if text[i] != ",":
            return None
        i = skip_blanks(i + 1)


def setting_value(name: str, value: str) -> sql.Composable:
    """The right-hand side of ``SET name = ...`` that the server stores as ``value`` again.

    The server stores a one-literal value verbatim, except for GUC_LIST_QUOTE parameters, which
    quote each element as an identifier: those get one literal per element (as pg_dump does)."""
    if name.lower() in LIST_QUOTE_PARAMETERS:
        elements = split_list(value)
        if elements:
            return sql.SQL(", ").join(sql.Literal(element) for element in elements)
    return sql.Literal(value)


def parse_setconfig(entries: Iterable[str] | None) -> dict[str, str]:
    """``pg_db_role_setting.setconfig`` (``name=value`` strings) as a dict. Names never contain
    ``=``; values may."""
    out: dict[str, str] = {}
    for entry in entries or ():
        name, sep, value = entry.partition("=")
        if sep:
            out[name] = value
    return out


def make_plan(master: Master, source: Role, clone: str, existing: Role | None,
              memberships: Iterable[Membership], source_settings: Mapping[SettingKey, str],
              clone_settings: Mapping[SettingKey, str]) -> Plan:
    """The changes that make ``clone`` (``existing``, or None if absent) match ``source``."""
    desired = replace(source.attributes, inherit=True)
    current = existing.attributes if existing else Attributes()
    changes = tuple(f.name for f in fields(Attributes)
                    if getattr(current, f.name) != getattr(desired, f.name))
    rows = tuple(memberships)
    in_source = [row for row in rows if row.role == source.name]
    per_grantor = master.server_version >= PG16
    # PG16+: a grant without INHERIT or SET would not pass the source's privileges on.
    usable = [row for row in in_source if not per_grantor or (row.inherit and row.set)]
    settings_to_set = tuple((key, source_settings[key]) for key in sorted(
        source_settings, key=_setting_order) if clone_settings.get(key) != source_settings[key])
    settings_to_reset = tuple(key for key in sorted(clone_settings, key=_setting_order)
                              if key not in source_settings)
    return Plan(source=source, clone=clone, existing=existing, attribute_changes=changes,
                desired=desired, grant_source=not usable,
                revoke_admin=tuple(row for row in in_source if row.admin),
                revoke=tuple(row for row in rows if row.role != source.name),
                set_settings=settings_to_set, reset_settings=settings_to_reset,
                server_version=master.server_version)


def _setting_order(key: SettingKey) -> tuple[bool, str, str]:
    database, name = key  # settings for every database first
    return (database is not None, database or "", name)


@dataclass(frozen=True)
class Parameter:
    """What the master may do with a parameter: its pg_settings context (None: not listed, as
    for ``role`` or a custom parameter no library defined) and whether it holds SET on it."""

    context: str | None
    may_set: bool = False


def privilege_needs(master: Master, plan: Plan, parameters: Mapping[str, Parameter],
                    admin_of: Mapping[str, bool], privileges_of: Mapping[str, bool]) -> list[Need]:
    """What the master lacks to carry out ``plan``; empty when it may do it all.

    ``admin_of``: role -> the master holds ADMIN OPTION on it; ``privileges_of``: grantor -> the
    master has that role's privileges (both only consulted on PG16+)."""
    if master.superuser:
        return []
    needs: list[Need] = []
    pg16 = plan.server_version >= PG16
    source, existing, clone = plan.source.name, plan.existing, plan.clone
    if not master.createrole:
        needs.append(Need("CREATEROLE", f"to create or alter role {clone!r}"))
    if plan.desired.superuser or (existing and existing.attributes.superuser):
        needs.append(Need("SUPERUSER", f"{source!r} is a superuser" if plan.desired.superuser
                          else f"{clone!r} is a superuser"))
    for name, holder in (("replication", master.replication), ("bypassrls", master.bypassrls),
                         ("createdb", master.createdb)):
        flag = _FLAGS[name][0]
        changing = name in plan.attribute_changes
        if pg16:
            if changing and not holder:
                needs.append(Need(flag, f"{_who(plan, name)}: PostgreSQL 16+ lets only a master "
                                        f"holding {flag} give or take it"))
        elif name == "bypassrls" and changing:
            needs.append(Need("SUPERUSER", f"{_who(plan, name)}: PostgreSQL before 16 lets only "
                                           "superusers give or take BYPASSRLS"))
        elif name == "replication" and (plan.desired.replication or (
                existing and existing.attributes.replication)):
            needs.append(Need("SUPERUSER", f"{_who(plan, name)}: PostgreSQL before 16 lets only "
                                           "superusers alter a REPLICATION role"))
    if pg16 and existing is not None and not admin_of.get(clone, False):
        needs.append(Need(f"ADMIN OPTION on {clone!r}",
                          "PostgreSQL 16+ lets a CREATEROLE user alter only roles it administers"))
    if pg16 and plan.grant_source and not admin_of.get(source, False):
        needs.append(Need(f"ADMIN OPTION on {source!r}", f"to grant {source!r} to {clone!r}"))
    for row in (*plan.revoke, *plan.revoke_admin):
        if row.role_superuser:
            needs.append(Need("SUPERUSER", f"to revoke superuser role {row.role!r} from "
                                           f"{clone!r}"))
        elif pg16 and row.grantor and row.grantor != master.name \
                and not privileges_of.get(row.grantor, False):
            needs.append(Need(f"the privileges of role {row.grantor!r}",
                              f"to revoke its grant of {row.role!r} to {clone!r}"))
    names = {name for (_db, name), _v in plan.set_settings}
    names |= {name for _db, name in plan.reset_settings}
    for name in sorted(names):
        parameter = parameters.get(name.lower(), Parameter(None))
        context = parameter.context
        if context == "user" or (context is None and "." not in name):
            continue  # anyone may; unlisted built-ins (role) are checked by the server
        if context in ("superuser", None) and parameter.may_set:
            continue
        grant = (f"SUPERUSER or SET on parameter {name!r}"
                 if context in ("superuser", None) and master.server_version >= PG15
                 else "SUPERUSER")
        needs.append(Need(grant, f"to set or reset {name!r} ({context or 'custom'} parameter) "
                                 f"for {clone!r}"))
    return needs


def _who(plan: Plan, attribute: str) -> str:
    flag = _FLAGS[attribute][0]
    if getattr(plan.desired, attribute):
        return f"source role {plan.source.name!r} has {flag}"
    return f"clone role {plan.clone!r} has {flag}"


# -- reading the catalogs ------------------------------------------------------------------------

def read_plan(execute: Execute, source: str, clone: str, where: str) -> Plan:
    """Read everything, plan, and check the master's privileges: raise before any change."""
    if source == clone:
        raise SecretFormatError("the clone user has the same name as the source user",
                                key="username", hint="use a different name for the clone")
    master = _read_master(execute)
    roles = _read_roles(execute, source, clone)
    if source not in roles:
        raise DatabaseError(f"role {source!r} does not exist on {where}",
                            hint="check `username` in the secret; alternating users clone an "
                                 "existing role")
    existing = roles.get(clone)
    if roles[source].expired:
        raise DatabaseError(
            f"role {source!r} on {where} is past its VALID UNTIL, which the clone copies: the "
            "clone could not log in either",
            hint=f"ALTER ROLE {source} VALID UNTIL 'infinity' (or a later time), then rotate")
    memberships = _read_memberships(execute, clone, master.server_version) if existing else []
    settings = _read_settings(execute, source, clone)
    plan = make_plan(master, roles[source], clone, existing, memberships,
                     settings.get(source, {}), settings.get(clone, {}))
    needs = privilege_needs(master, plan, *_read_master_rights(execute, master, plan))
    if needs:
        missing = ", ".join(dict.fromkeys(need.privilege for need in needs))
        reasons = "; ".join(f"{need.privilege}: {need.reason}" for need in needs)
        raise PrivilegeError(
            f"master user {master.name!r} on {where} cannot make {clone!r} match {source!r}; "
            f"missing {missing} ({reasons}). Nothing was changed",
            hint=f"give the master user {missing}, or use a master secret whose user has it, "
                 f"or drop from {source!r} what needs it")
    return plan


def log_plan(plan: Plan) -> None:
    if plan.changes_privileges:
        log.info("clone %r brought in line with %r: %s", plan.clone, plan.source.name,
                 plan.summary())


def _read_master(execute: Execute) -> Master:
    rows = execute(sql.SQL(
        "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
        "current_setting('server_version_num')::int FROM pg_roles WHERE rolname = current_user"))
    name, superuser, createrole, createdb, replication, bypassrls, version = rows[0]
    return Master(str(name), bool(superuser), bool(createrole), bool(createdb),
                  bool(replication), bool(bypassrls), int(version))


def _read_roles(execute: Execute, source: str, clone: str) -> dict[str, Role]:
    # rolvaliduntil as text: psycopg cannot load 'infinity' as a datetime, and the text form
    # round-trips through VALID UNTIL in this same session.
    rows = execute(sql.SQL(
        "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolreplication, "
        "rolbypassrls, rolconnlimit, coalesce(rolvaliduntil::text, 'infinity'), "
        "coalesce(rolvaliduntil < now(), false) FROM pg_roles WHERE rolname IN ({}, {})"
    ).format(sql.Literal(source), sql.Literal(clone)))
    out: dict[str, Role] = {}
    for name, sup, createdb, createrole, inherit, repl, bypass, limit, until, expired in rows:
        out[str(name)] = Role(str(name), Attributes(
            superuser=bool(sup), createdb=bool(createdb), createrole=bool(createrole),
            inherit=bool(inherit), replication=bool(repl), bypassrls=bool(bypass),
            connection_limit=int(limit), valid_until=str(until)), expired=bool(expired))
    return out


def _read_memberships(execute: Execute, clone: str, version: int) -> list[Membership]:
    options = sql.SQL("m.inherit_option, m.set_option" if version >= PG16 else "true, true")
    rows = execute(sql.SQL(
        "SELECT r.rolname, r.rolsuper, m.admin_option, g.rolname, {} "
        "FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member LEFT JOIN pg_roles g ON g.oid = m.grantor "
        "WHERE u.rolname = {} ORDER BY r.rolname, g.rolname"
    ).format(options, sql.Literal(clone)))
    return [Membership(str(role), bool(sup), bool(admin), None if grantor is None else str(grantor),
                       bool(inherit), bool(set_))
            for role, sup, admin, grantor, inherit, set_ in rows]


def _read_settings(execute: Execute, source: str,
                   clone: str) -> dict[str, dict[SettingKey, str]]:
    rows = execute(sql.SQL(
        "SELECT r.rolname, d.datname, s.setconfig FROM pg_db_role_setting s "
        "JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE r.rolname IN ({}, {}) AND (s.setdatabase = 0 OR d.datname IS NOT NULL)"
    ).format(sql.Literal(source), sql.Literal(clone)))
    out: dict[str, dict[SettingKey, str]] = {}
    for role, database, config in rows:
        target = out.setdefault(str(role), {})
        for name, value in parse_setconfig(config).items():
            target[(None if database is None else str(database), name)] = value
    return out


def _read_master_rights(execute: Execute, master: Master, plan: Plan) -> tuple[
        dict[str, Parameter], dict[str, bool], dict[str, bool]]:
    """The reads :func:`privilege_needs` consults; none for a superuser master."""
    parameters: dict[str, Parameter] = {}
    admin_of: dict[str, bool] = {}
    privileges_of: dict[str, bool] = {}
    if master.superuser:
        return parameters, admin_of, privileges_of
    names = sorted({name for (_db, name), _v in plan.set_settings}
                   | {name for _db, name in plan.reset_settings})
    if names:
        # has_parameter_privilege (PG15+) only where the context does not already decide.
        may_set = ("CASE WHEN s.context = 'superuser' OR (s.name IS NULL AND "
                   "strpos(n.name, '.') > 0) THEN has_parameter_privilege(n.name, 'SET') END"
                   if master.server_version >= PG15 else "false")
        rows = execute(sql.SQL(
            "SELECT n.name, s.context, {} FROM (VALUES {}) AS n(name) "
            "LEFT JOIN pg_settings s ON lower(s.name) = lower(n.name)"
        ).format(sql.SQL(may_set),
                 sql.SQL(", ").join(sql.SQL("({})").format(sql.Literal(n)) for n in names)))
        for name, context, allowed in rows:
            parameters[str(name).lower()] = Parameter(
                None if context is None else str(context), bool(allowed))
    if master.server_version >= PG16:
        roles = sorted({plan.clone, plan.source.name} | {row.role for row in plan.revoke})
        grantors = sorted({row.grantor for row in (*plan.revoke, *plan.revoke_admin)
                           if row.grantor and row.grantor != master.name})
        checks = [(name, "MEMBER WITH ADMIN OPTION") for name in roles] + \
                 [(name, "USAGE") for name in grantors]
        rows = execute(sql.SQL(
            "SELECT n.name, n.mode, pg_has_role(r.oid, n.mode) FROM (VALUES {}) AS n(name, mode) "
            "JOIN pg_roles r ON r.rolname = n.name"
        ).format(sql.SQL(", ").join(sql.SQL("({}, {})").format(sql.Literal(name),
                                                              sql.Literal(mode))
                                    for name, mode in checks)))
        for name, mode, allowed in rows:
            (privileges_of if mode == "USAGE" else admin_of)[str(name)] = bool(allowed)
    return parameters, admin_of, privileges_of
