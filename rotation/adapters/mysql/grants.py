"""SHOW GRANTS and SHOW CREATE USER: read, rewritten for a clone, and replayed (pure).

The lines these print are split into tokens (:func:`tokenize`: a quoted name or string is one
token, whatever it contains) and each SHOW GRANTS line around its grantee (:func:`parse_grant`).
A clone is given its source's grants with :func:`rewrite_grants` (the source's lines, granted to
the clone), :func:`plan_grant_additions` (what the clone lacks; nothing is taken away) and
:func:`plan_grant_sync` (what it holds beyond the source is revoked, and the source's lines
replayed). The TLS requirement and resource limits that MariaDB prints on an account's global
line are split off (:func:`split_account_options`) and set with ``ALTER USER`` instead
(:func:`build_account_options`). :func:`parse_create_user` reads an account's plugin from
``SHOW CREATE USER`` when ``mysql.user`` cannot be read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from rotation.adapters.mysql.auth import NATIVE, normalize_plugin
from rotation.adapters.mysql.names import Account, account_sql
from rotation.adapters.mysql.server import ServerInfo, Statement
from rotation.errors import DatabaseError

# --------------------------------------------------------------------------------------------
# SHOW GRANTS / SHOW CREATE USER parsing (pure)
# --------------------------------------------------------------------------------------------

class GrantParseError(DatabaseError):
    """A SHOW GRANTS / SHOW CREATE USER line this adapter does not understand."""


_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
      | (?P<ident>`(?:[^`]|``)*`)
      | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
      | (?P<word>[A-Za-z0-9_$.*]+)
      | (?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)
_BACKSLASH_ESCAPES = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


@dataclass(frozen=True)
class Token:
    kind: Literal["ws", "ident", "string", "word", "punct"]
    text: str
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words

    @property
    def value(self) -> str:
        """The token's meaning: quotes removed and escapes resolved."""
        if self.kind == "ident":
            return self.text[1:-1].replace("``", "`")
        if self.kind == "string":
            return _unquote_string(self.text)
        return self.text


def _unquote_string(text: str) -> str:
    quote, body = text[0], text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_BACKSLASH_ESCAPES.get(nxt, nxt))
            i += 2
        elif char == quote and i + 1 < len(body) and body[i + 1] == quote:
            out.append(quote)
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def tokenize(text: str) -> list[Token]:
    """Split SQL text into tokens; a quoted name or string is one token whatever it contains."""
    tokens: list[Token] = []
    for match in _TOKEN_RE.finditer(text):
        kind = match.lastgroup
        assert kind is not None
        token = Token(kind, match.group(), match.start(), match.end())  # type: ignore[arg-type]
        if token.kind == "punct" and token.text in "`'\"":
            raise GrantParseError(f"unterminated quote in {_shorten(text)!r}",
                                  hint="report this SHOW GRANTS line as a bug")
        tokens.append(token)
    return tokens


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _solid(tokens: Iterable[Token]) -> list[Token]:
    return [t for t in tokens if t.kind != "ws"]


_NAME_KINDS = ("ident", "string", "word")


def _account_at(tokens: list[Token], index: int) -> tuple[Account, int] | None:
    """The ``user@host`` account starting at solid token ``index``, and the index after it."""
    if index + 2 < len(tokens) and tokens[index].kind in _NAME_KINDS \
            and tokens[index + 1].kind == "punct" and tokens[index + 1].text == "@" \
            and tokens[index + 2].kind in _NAME_KINDS:
        return Account(tokens[index].value, tokens[index + 2].value), index + 3
    return None


@dataclass(frozen=True)
class GrantLine:
    """One line of SHOW GRANTS, split around its grantee.

    ``kind`` is ``grant`` (``GRANT ... TO a``), ``revoke`` (MySQL 8 partial revokes,
    ``REVOKE ... FROM a``) or ``default-role`` (MariaDB ``SET DEFAULT ROLE r FOR a``).
    ``head`` is the text before the grantee (verbatim), ``tail`` what follows it with any
    ``IDENTIFIED ...`` clause removed (MariaDB and MySQL 5.6 print the password hash there).
    """

    kind: Literal["grant", "revoke", "default-role"]
    head: str
    grantee: Account
    tail: str
    body: str  # between the leading keyword and ON/TO: privileges, or the roles granted
    on_object: bool  # a privilege grant (``... ON object``) rather than a role grant
    proxy: bool

    def to(self, account: Account) -> str:
        """This line, granted to ``account`` instead, without any IDENTIFIED clause."""
        text = f"{self.head} {account_sql(account)}"
        return f"{text} {self.tail}" if self.tail else text

    def roles(self) -> list[str]:
        """The roles a role grant or default-role line names (``r`` or ``r@h`` values)."""
        names: list[str] = []
        for token in _solid(tokenize(self.body)):
            if token.kind == "punct" and token.text == "@" and names:
                names[-1] += "@"
            elif token.kind in _NAME_KINDS:
                if names and names[-1].endswith("@"):
                    names[-1] += token.value
                else:
                    names.append(token.value)
        return names

    def undo(self) -> str | None:
        """The statement taking this line's grant away again, when ``REVOKE ALL PRIVILEGES,
        GRANT OPTION`` does not: role grants, PROXY grants and default roles."""
        target = account_sql(self.grantee)
        if self.kind == "default-role":
            return f"SET DEFAULT ROLE NONE FOR {target}"
        if self.kind != "grant":
            return None
        if self.proxy:
            return f"REVOKE {self.body} FROM {target}"
        if not self.on_object:
            return f"REVOKE {self.body} FROM {target}"
        return None


def parse_grant(line: str) -> GrantLine:
    """Split one SHOW GRANTS line around its grantee (see :class:`GrantLine`)."""
    tokens = _solid(tokenize(line))
    if not tokens or tokens[0].kind != "word":
        raise GrantParseError(f"cannot read the grant {_shorten(line)!r}",
                              hint="report this SHOW GRANTS line as a bug")
    first = tokens[0].text.upper()
    kind: Literal["grant", "revoke", "default-role"]
    if first == "GRANT":
        kind, keyword = "grant", "TO"
    elif first == "REVOKE":
        kind, keyword = "revoke", "FROM"
    elif first == "SET" and len(tokens) > 2 and tokens[1].is_word("DEFAULT") \
            and tokens[2].is_word("ROLE"):
        kind, keyword = "default-role", "FOR"
    else:
        raise GrantParseError(f"unexpected SHOW GRANTS line {_shorten(line)!r}",
                              hint="report this SHOW GRANTS line as a bug")
    position = next((i for i, t in enumerate(tokens) if t.is_word(keyword)), None)
    found = _account_at(tokens, position + 1) if position is not None else None
    if position is None or found is None:
        raise GrantParseError(f"no grantee found in {_shorten(line)!r}",
                              hint="report this SHOW GRANTS line as a bug")
    grantee, after = found
    on_index = next((i for i, t in enumerate(tokens[:position]) if t.is_word("ON")), None)
    body_end = tokens[on_index].start if on_index is not None else tokens[position].start
    body = line[tokens[0].end:body_end].strip()
    proxy = kind == "grant" and on_index is not None and body.upper() == "PROXY"
    if proxy:
        body = line[tokens[0].end:tokens[position].start].strip()  # "PROXY ON ''@''"
    if kind == "default-role":
        body = line[tokens[2].end:tokens[position].start].strip()  # the role(s)
    rest = tokens[after:]
    if rest and rest[0].is_word("IDENTIFIED"):
        cut = 1
        if len(rest) > 1 and rest[1].is_word("WITH", "VIA", "BY"):
            cut = 2
        while cut < len(rest) and not rest[cut].is_word("REQUIRE", "WITH"):
            cut += 1
        rest = rest[cut:]
    head = line[:tokens[position].end]
    tail = " ".join(t.text for t in rest)
    return GrantLine(kind, head, grantee, tail, body, on_index is not None, proxy)


def rewrite_grants(lines: Iterable[str], source: Account, target: Account) -> list[str]:
    """``source``'s SHOW GRANTS lines, granted to ``target``: GRANT lines first, then partial
    REVOKEs, then default roles. Refuses a line whose grantee is not ``source``."""
    order = {"grant": 0, "revoke": 1, "default-role": 2}
    parsed: list[GrantLine] = []
    for line in lines:
        grant = parse_grant(line)
        if grant.grantee.user != source.user or grant.grantee.host.lower() != source.host.lower():
            raise GrantParseError(
                f"SHOW GRANTS FOR {source} returned a grant for {grant.grantee}",
                hint="report this SHOW GRANTS output as a bug")
        parsed.append(grant)
    # MariaDB keeps a default role after the role itself is revoked; replaying it would fail
    # ("has not been granted role"), so a default role is kept only while it is granted.
    granted = {role for g in parsed if g.kind == "grant" and not g.on_object
               for role in g.roles()}
    parsed = [g for g in parsed if g.kind != "default-role" or set(g.roles()) <= granted]
    parsed.sort(key=lambda g: order[g.kind])  # stable: keeps the server's order within a kind
    return [g.to(target) for g in parsed]


def _is_default_role(line: str) -> bool:
    return parse_grant(line).kind == "default-role"


def plan_grant_additions(desired: Sequence[str], current: Sequence[str],
                         target: Account) -> list[Statement]:
    """The first half of a grant sync, which takes nothing away: each ``desired`` line
    ``target`` does not show yet (grants, then MySQL 8 partial revokes, then MariaDB's default
    role), in :func:`rewrite_grants`'s order. A privilege the master may not grant fails here,
    before :func:`plan_grant_sync` revokes anything, and every line this runs is known to be
    grantable when that one replays it."""
    have = set(current)
    return [Statement(line, action=f"copy {_what(line)!r} to {target}")
            for line in desired if line not in have]


def _what(line: str) -> str:
    """What a grant line grants, for messages: the text before its grantee, without TO."""
    head = parse_grant(line).head
    return _shorten(head[:head.rfind(" ")] if " " in head else head, 100)


def plan_grant_sync(desired: Sequence[str], current: Sequence[str],
                    target: Account) -> list[Statement]:
    """Statements that give ``target`` exactly the ``desired`` grants, given its ``current``
    ones (both as :func:`rewrite_grants` writes them). Nothing when they already match;
    otherwise undo the role / proxy / default-role lines that are no longer wanted (REVOKE ALL
    does not reach them on MySQL; on MariaDB it does, so they go first), REVOKE ALL PRIVILEGES,
    GRANT OPTION, and replay every desired line.

    MariaDB keeps an account's default role through REVOKE ALL, so a default role already in
    place is not set again: SET DEFAULT ROLE ... FOR another account needs UPDATE on the mysql
    schema, and failing on it after REVOKE ALL would fail the sync for nothing."""
    if sorted(desired) == sorted(current):
        return []
    plan: list[Statement] = []
    wanted = set(desired)
    for line in current:
        if line in wanted:
            continue
        undo = parse_grant(line).undo()
        if undo is not None:
            plan.append(Statement(undo, action=f"remove a grant from {target}"))
    plan.append(Statement(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account_sql(target)}",
                          action=f"revoke the privileges of {target}"))
    have = set(current)
    plan.extend(Statement(line, action=f"copy privileges to {target}") for line in desired
                if not (line in have and _is_default_role(line)))
    return plan


# --------------------------------------------------------------------------------------------
# Account options: REQUIRE and resource limits (pure)
# --------------------------------------------------------------------------------------------

#: resource limits as SHOW GRANTS prints them (MAX_STATEMENT_TIME is MariaDB's)
RESOURCE_LIMITS = ("MAX_QUERIES_PER_HOUR", "MAX_UPDATES_PER_HOUR", "MAX_CONNECTIONS_PER_HOUR",
                   "MAX_USER_CONNECTIONS", "MAX_STATEMENT_TIME")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class AccountOptions:
    """An account's TLS requirement and resource limits, as MariaDB (and MySQL 5.7.5 and older)
    print them on its global SHOW GRANTS line. ``require``: ``("SSL", "")``, ``("X509", "")``
    or ``("ISSUER" | "SUBJECT" | "CIPHER", value)`` items; ``limits``: the non-zero
    ``(name, number)`` pairs, sorted."""

    require: tuple[tuple[str, str], ...] = ()
    limits: tuple[tuple[str, str], ...] = ()


def _split_tail(tail: str) -> tuple[str, list[tuple[str, str]], dict[str, str]] | None:
    """A grant line's tail without its REQUIRE and resource-limit clauses, and those clauses;
    None when it has none, or holds something this does not know (the line is kept whole)."""
    tokens = _solid(tokenize(tail))
    kept: list[str] = []
    require: list[tuple[str, str]] = []
    limits: dict[str, str] = {}
    found = False
    i = 0
    while i < len(tokens):
        if tokens[i].is_word("REQUIRE"):
            found, i = True, i + 1
            while i < len(tokens) and not tokens[i].is_word("WITH"):
                word = tokens[i]
                if word.is_word("SSL", "X509"):
                    require.append((word.text.upper(), ""))
                    i += 1
                elif word.is_word("NONE", "AND"):
                    i += 1
                elif word.is_word("ISSUER", "SUBJECT", "CIPHER") and i + 1 < len(tokens) \
                        and tokens[i + 1].kind == "string":
                    require.append((word.text.upper(), tokens[i + 1].value))
                    i += 2
                else:
                    return None
        elif tokens[i].is_word("WITH"):
            i += 1
            while i < len(tokens):
                word, rest = tokens[i], tokens[i + 1:i + 3]
                sign = "-" if rest and rest[0].kind == "punct" and rest[0].text == "-" else ""
                number = rest[1] if sign and len(rest) > 1 else (rest[0] if rest else None)
                if word.is_word("GRANT", "ADMIN") and rest and rest[0].is_word("OPTION"):
                    kept.append(f"{word.text.upper()} OPTION")
                    i += 2
                elif word.is_word(*RESOURCE_LIMITS) and number is not None \
                        and number.kind == "word" and _NUMBER_RE.fullmatch(number.text):
                    found = True
                    limits[word.text.upper()] = sign + number.text
                    i += 3 if sign else 2
                else:
                    return None
        else:
            return None
    if not found:
        return None
    return ("WITH " + " ".join(kept) if kept else ""), require, limits


def split_account_options(lines: Iterable[str]) -> tuple[list[str], AccountOptions]:
    """Grant lines (as :func:`rewrite_grants` writes them) without their REQUIRE and resource
    limit clauses, and those clauses. They are set with ALTER USER instead
    (:func:`build_account_options`): on MariaDB a GRANT carrying them needs UPDATE on the mysql
    schema (error 1044), ALTER USER only CREATE USER, and REVOKE ALL does not reset them."""
    kept: list[str] = []
    require: list[tuple[str, str]] = []
    limits: dict[str, str] = {}
    for line in lines:
        grant = parse_grant(line)
        split = _split_tail(grant.tail) if grant.kind == "grant" else None
        if split is None:
            kept.append(line)
            continue
        tail, line_require, line_limits = split
        kept.append(replace(grant, tail=tail).to(grant.grantee))
        require.extend(line_require)
        limits.update(line_limits)
    nonzero = sorted((name, value) for name, value in limits.items()
                     if float(value) != 0)
    return kept, AccountOptions(tuple(require), tuple(nonzero))


def build_account_options(server: ServerInfo, account: Account,
                          options: AccountOptions) -> Statement:
    """``ALTER USER account REQUIRE ... WITH MAX_...`` giving ``account`` exactly ``options``:
    every limit is written (0 where ``options`` has none), so a requirement or limit the source
    no longer has is dropped too. Needs CREATE USER only. The keywords and numbers were checked
    when the SHOW GRANTS line was read; DN and cipher strings travel as arguments."""
    clauses: list[str] = []
    args: list[str] = []
    for kind, value in options.require:
        if value:
            clauses.append(f"{kind} %s")
            args.append(value)
        else:
            clauses.append(kind)
    have = dict(options.limits)
    names = RESOURCE_LIMITS if server.is_mariadb else RESOURCE_LIMITS[:-1]
    limits = " ".join(f"{name} {have.get(name, '0')}" for name in names)
    template = "ALTER USER {0} REQUIRE " + (" AND ".join(clauses) or "NONE") + " WITH " + limits
    return Statement.build(template, [account], args,
                           action=f"set the TLS requirement and resource limits of {account}")


def parse_create_user(text: str) -> tuple[str, str | None]:
    """The plugin named by a SHOW CREATE USER line, and its stored hash when the plugin is
    mysql_native_password (None otherwise). Used when mysql.user cannot be read.

    MySQL: ``IDENTIFIED WITH 'plugin' [AS 'hash']``; MariaDB: ``IDENTIFIED BY PASSWORD 'hash'``,
    ``IDENTIFIED VIA plugin [USING 'hash'] [OR ...]``, or nothing (no password)."""
    tokens = _solid(tokenize(text))
    index = next((i for i, t in enumerate(tokens) if t.is_word("IDENTIFIED")), None)
    if index is None:
        return NATIVE, ""
    rest = tokens[index + 1:]
    plugin: str | None = None
    auth: str | None = None
    if rest and rest[0].is_word("BY") and len(rest) > 2 and rest[1].is_word("PASSWORD"):
        plugin, auth = NATIVE, rest[2].value
    elif len(rest) > 1 and rest[0].is_word("WITH", "VIA") and rest[1].kind in _NAME_KINDS:
        plugin = rest[1].value
        if len(rest) > 3 and rest[2].is_word("AS", "USING") and rest[3].kind == "string":
            auth = rest[3].value
    if plugin is None:
        raise GrantParseError("cannot read the authentication plugin from SHOW CREATE USER",
                              hint="report this as a bug, with the server version")
    plugin = normalize_plugin(plugin)
    return plugin, auth if plugin == NATIVE else None


__all__ = [
    "RESOURCE_LIMITS",
    "AccountOptions",
    "GrantLine",
    "GrantParseError",
    "Token",
    "build_account_options",
    "parse_create_user",
    "parse_grant",
    "plan_grant_additions",
    "plan_grant_sync",
    "rewrite_grants",
    "split_account_options",
    "tokenize",
]
