"""README.md and docs/*.md cannot rot: every fenced block is run or checked, every relative link
resolves, every cited test exists, the reference tables match the code and the template, every
template parameter the prose names exists (and no claim that one is missing goes unchecked), and
troubleshooting's `cause` table covers every error category, each row linking to sections that
name an error of that cause.

A block's treatment is the word after its language in the info string (```sh run, ```json
file=examples/secrets/secret-postgres.json, ...); a block without one fails. The scheme is
described in the README ("The docs are tested"):

* ``console run``: each ``$ `` command runs; the other lines are its expected stdout, compared line
  by line after masking ids, ports and timings. ``...`` skips any number of lines; lines not
  separated by ``...`` must be adjacent; an expected block is anchored at the output's start and
  end unless it begins or ends with ``...``.
* ``sh run``: runs in ``bash -euo pipefail``; must exit 0.
* ``sh check``: needs AWS or Docker, so each command is validated instead (see ``check_*``).
* ``python run`` / ``python local-stack``: run as a script (the latter inside ``local_stack()``).
* ``python|toml excerpt=PATH``: verbatim in PATH. ``toml parse``: parses.
* ``json file=PATH``: equals PATH. ``json parse``: parses. ``json log-line``: the keys of a real
  failure log line. ``logsinsights file=PATH``: equals PATH. ``text diagram``: not executed.

The block at the top of the README (``make demo``, ``make test``) is the contract with CI. Running
it here would recurse (``make test`` runs this file), so it is checked with ``make -n`` instead.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent  # the virtualenv running the tests (.venv/bin)
RUN_TIMEOUT = 180  # seconds per command or block; the whole file takes far less

CI_CONTRACT = (
    "# rotation — AWS Secrets Manager rotation functions for PostgreSQL and MySQL/MariaDB\n"
    "\n"
    "```sh\n"
    "make demo   # sets up .venv (+ database server packages where missing), then rotates a real "
    "PostgreSQL user on moto\n"
    "make test   # same setup, then ruff, mypy --strict and the whole test suite (unit, "
    "functional, integration, performance)\n"
    "```\n"
)

TREATMENTS = {
    ("console", "run"), ("sh", "run"), ("sh", "check"), ("python", "run"),
    ("python", "local-stack"), ("python", "excerpt"), ("toml", "excerpt"), ("toml", "parse"),
    ("json", "file"), ("json", "parse"), ("json", "log-line"), ("logsinsights", "file"),
    ("text", "diagram"),
}


# -- extracting blocks ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    text: str  # without the fences, ending in a newline (or empty)

    @property
    def lang(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def treatment(self) -> str:
        words = self.info.split()[1:2]
        return words[0].split("=", 1)[0] if words else ""

    @property
    def argument(self) -> str:
        words = self.info.split()[1:2]
        return words[0].split("=", 1)[1] if words and "=" in words[0] else ""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}:{self.lang}-{self.treatment or 'none'}"


def extract_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            fence = re.match(r"`{3,}", line)
            assert fence is not None
            start, body = index, []
            index += 1
            while index < len(lines) and not lines[index].startswith(fence.group(0)):
                body.append(lines[index])
                index += 1
            assert index < len(lines), f"{path}:{start + 1}: unclosed code block"
            text = "\n".join(body) + ("\n" if body else "")
            blocks.append(Block(path, start + 1, line[len(fence.group(0)):].strip(), text))
        index += 1
    return blocks


ALL_BLOCKS = [block for path in DOCS for block in extract_blocks(path)]


def is_ci_contract(block: Block) -> bool:
    return block.path == README and block is next(b for b in ALL_BLOCKS if b.path == README)


# -- running things ------------------------------------------------------------------------------

def run_env() -> dict[str, str]:
    # Not this session's pytest variables: a nested pytest must start as a fresh session.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    env["NO_COLOR"] = "1"
    return env


def run(argv: list[str], *, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=run_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\nstderr:\n" \
           f"{result.stderr[-4000:]}"


# -- console run ---------------------------------------------------------------------------------

_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{8}\b"), "<id>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"\d+\.\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalize(line: str) -> str:
    line = line.strip()
    for pattern, replacement in _MASKS:
        line = pattern.sub(replacement, line)
    return line


def matches_transcript(expected: list[str], actual: list[str]) -> str | None:
    """None when ``actual`` shows ``expected`` (see the module docstring), else why not."""
    want = [normalize(line) for line in expected if line.strip()]
    got = [normalize(line) for line in actual if line.strip()]
    segments: list[list[str]] = [[]]
    for line in want:
        if line == "...":
            segments.append([])
        else:
            segments[-1].append(line)
    open_start, open_end = want[:1] == ["..."], want[-1:] == ["..."]
    position = 0
    last = max(i for i, segment in enumerate(segments) if segment)
    for number, segment in enumerate(segments):
        if not segment:
            continue
        candidates: range | list[int] = range(position, len(got) - len(segment) + 1)
        if number == last and not open_end:
            candidates = [len(got) - len(segment)] if len(got) - len(segment) >= position else []
        if number == 0 and not open_start:
            candidates = [0] if 0 in candidates else []
        found = next((i for i in candidates if got[i:i + len(segment)] == segment), None)
        if found is None:
            return "expected lines not found in order:\n  " + "\n  ".join(segment)
        position = found + len(segment)
    if not open_end and position != len(got):
        return "the output goes on after the last expected line:\n  " + "\n  ".join(
            got[position:position + 5])
    return None


def check_console_run(block: Block) -> None:
    commands: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            assert commands, f"{block.id}: output before the first `$ ` command"
            commands[-1][1].append(line)
    assert commands, f"{block.id}: no `$ ` command"
    for command, expected in commands:
        result = run(["bash", "-c", command])
        assert result.returncode == 0, f"{command}\n{explain(result)}"
        if expected:
            problem = matches_transcript(expected, result.stdout.splitlines())
            assert problem is None, f"{command}: {problem}\n{explain(result)}"


# -- sh check ------------------------------------------------------------------------------------

def shell_commands(text: str) -> list[list[str]]:
    """Each command of a block; `a && b` on one line is two commands."""
    joined = re.sub(r"\\\n", " ", text)
    commands: list[list[str]] = []
    for line in joined.splitlines():
        command: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word != "&&":
                command.append(word)
            elif command:
                commands.append(command)
                command = []
    return commands


@cache
def template() -> dict[str, Any]:
    from cfnlint.decode import decode_str  # type: ignore[import-untyped]

    data, matches = decode_str((ROOT / "template.yaml").read_text())
    assert not matches, matches
    return dict(data)


def check_parameter_value(name: str, value: str) -> None:
    parameters = template()["Parameters"]
    assert name in parameters, f"{name} is not a parameter of template.yaml " \
                               f"(it has {', '.join(parameters)})"
    spec = parameters[name]
    values = value.split(",") if spec["Type"] == "CommaDelimitedList" else [value]
    for item in values:
        if "AllowedValues" in spec:
            assert item in [str(v) for v in spec["AllowedValues"]], f"{name}={item}"
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], item), f"{name}={item} breaks its pattern"
        if spec["Type"] == "Number":
            number = float(item)
            assert spec.get("MinValue", number) <= number <= spec.get("MaxValue", number), \
                f"{name}={item} is out of range"


# SAM CLI options the docs may use (from `sam <command> --help`, SAM CLI 1.x; the SAM CLI is not
# installed here). Values: how many arguments the option takes ("*": until the next option).
SAM_OPTIONS: dict[str, dict[str, int | str]] = {
    "build": {"--build-in-source": 0, "--use-container": 0, "--parameter-overrides": "*",
              "--template-file": 1},
    "deploy": {"--guided": 0, "--stack-name": 1, "--capabilities": "*",
               "--parameter-overrides": "*", "--region": 1, "--resolve-s3": 0,
               "--no-confirm-changeset": 0, "--config-env": 1, "--tags": 1},
    "package": {"--s3-bucket": 1, "--resolve-s3": 0, "--output-template-file": 1,
                "--template-file": 1, "--region": 1},
    "publish": {"--template": 1, "--region": 1, "--semantic-version": 1},
    "local invoke": {"-e": 1, "--event": 1, "--parameter-overrides": "*", "--env-vars": 1},
}
CAPABILITIES = {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"}


def check_sam(argv: list[str]) -> None:
    command = " ".join(argv[1:3]) if argv[1:3] == ["local", "invoke"] else argv[1]
    assert command in SAM_OPTIONS, f"no check for `sam {command}`"
    options = SAM_OPTIONS[command]
    rest = argv[3:] if command == "local invoke" else argv[2:]
    if command == "local invoke":
        function = rest.pop(0)
        resource = template()["Resources"].get(function, {})
        assert resource.get("Type") == "AWS::Serverless::Function", \
            f"{function} is not a function in template.yaml"
    index = 0
    while index < len(rest):
        option = rest[index]
        assert option in options, f"sam {command}: unknown option {option}"
        arity = options[option]
        values: list[str] = []
        index += 1
        while index < len(rest) and (arity == "*" or len(values) < int(arity)):
            if arity == "*" and rest[index].startswith("-"):
                break
            values.append(rest[index])
            index += 1
        if option == "--parameter-overrides":
            for item in values:
                name, _, value = item.partition("=")
                check_parameter_value(name, value)
        elif option == "--capabilities":
            assert set(values) <= CAPABILITIES, values
        elif option in ("-e", "--event"):
            assert (ROOT / values[0]).is_file(), f"no event file {values[0]}"


AWS_GLOBAL_OPTIONS = {"--region": 1, "--query": 1, "--output": 1, "--profile": 1,
                      "--no-cli-pager": 0}


def _aws_value(shape: Any, values: list[str]) -> Any:
    kind = shape.type_name
    if kind == "list":
        if shape.member.type_name in ("structure", "map", "list"):
            assert len(values) == 1, "give a list of structures as one JSON argument"
            return json.loads(values[0])
        return list(values)
    assert len(values) == 1, f"one value expected, got {values}"
    value = values[0]
    if kind in ("structure", "map"):
        return json.loads(value)
    if kind in ("integer", "long"):
        return int(value)
    if kind == "boolean":
        return value.lower() == "true"
    return value


def check_aws(argv: list[str]) -> None:
    """`aws SERVICE OPERATION --param value ...` against botocore's service model: the operation
    exists, every option is one of its parameters (or a global one), and the values pass the
    model's validation (types, JSON structures, required parameters)."""
    import botocore.session
    from botocore import xform_name
    from botocore.validate import validate_parameters

    session = botocore.session.get_session()
    service, operation_cli = argv[1], argv[2]
    assert service in session.get_available_services(), f"no AWS service {service}"
    model = session.get_service_model(service)
    operations = {xform_name(name, "-"): name for name in model.operation_names}
    assert operation_cli in operations, f"aws {service} has no operation {operation_cli}"
    operation = model.operation_model(operations[operation_cli])
    members = {xform_name(name, "-"): (name, shape)
               for name, shape in operation.input_shape.members.items()}
    params: dict[str, Any] = {}
    rest = argv[3:]
    index = 0
    while index < len(rest):
        option = rest[index]
        assert option.startswith("--"), f"unexpected argument {option!r}"
        index += 1
        if option in AWS_GLOBAL_OPTIONS:
            index += AWS_GLOBAL_OPTIONS[option]
            continue
        name = option[2:]
        if name.startswith("no-") and name[3:] in members \
                and members[name[3:]][1].type_name == "boolean":
            params[members[name[3:]][0]] = False
            continue
        assert name in members, f"aws {service} {operation_cli} has no parameter {option}"
        member, shape = members[name]
        values: list[str] = []
        while index < len(rest) and not rest[index].startswith("--"):
            values.append(rest[index])
            index += 1
        params[member] = True if shape.type_name == "boolean" and not values \
            else _aws_value(shape, values)
    validate_parameters(params, operation.input_shape)


def check_rotation_cli(argv: list[str]) -> None:
    from rotation.tools.cli import build_parser

    stderr = io.StringIO()
    try:
        from contextlib import redirect_stderr

        with redirect_stderr(stderr):
            build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        raise AssertionError(f"{shlex.join(argv)}: {stderr.getvalue().strip()}") from exc


def check_make(argv: list[str]) -> None:
    result = run(["make", "-n", *argv[1:]], timeout=60)
    assert result.returncode == 0, f"{shlex.join(argv)}: {explain(result)}"


def check_curl(argv: list[str]) -> None:
    urls = [a for a in argv if a.startswith(("http://", "https://"))]
    assert urls, "curl without a URL"
    known = (ROOT / "template.yaml").read_text()
    for url in urls:
        assert url.startswith("https://"), url
        assert url in known, f"{url} is not a URL template.yaml names"


CHECKERS: dict[str, Callable[[list[str]], None]] = {
    "aws": check_aws, "sam": check_sam, "rotation": check_rotation_cli, "make": check_make,
    "curl": check_curl,
}


def check_sh_check(block: Block) -> None:
    commands = shell_commands(block.text)
    assert commands, f"{block.id}: no command"
    for argv in commands:
        assert argv[0] in CHECKERS, f"{block.id}: no checker for `{argv[0]}` commands"
        try:
            CHECKERS[argv[0]](argv)
        except Exception as exc:
            raise AssertionError(f"{block.id}: {shlex.join(argv)}\n{exc}") from exc


# -- python --------------------------------------------------------------------------------------

LOCAL_STACK_SECRETS = {"prod/app/postgres": "examples/secrets/secret-postgres.json",
                       "prod/app/mysql": "examples/secrets/secret-mysql.json"}

LOCAL_STACK_PREAMBLE = """
import pathlib
from rotation.tools.local import local_stack

with local_stack() as _client:
    for _name, _path in {secrets!r}.items():
        _client.create_secret(Name=_name, SecretString=pathlib.Path(_path).read_text())
    exec(compile({source!r}, "<doc block>", "exec"), {{"__name__": "__main__"}})
"""


def check_python(block: Block) -> None:
    source = block.text
    if block.treatment == "local-stack":
        source = LOCAL_STACK_PREAMBLE.format(secrets=LOCAL_STACK_SECRETS, source=block.text)
    result = run([str(VENV_BIN / "python"), "-c", source])
    assert result.returncode == 0, f"{block.id}\n{explain(result)}"


# -- the other treatments ------------------------------------------------------------------------

def check_excerpt(block: Block) -> None:
    path = ROOT / block.argument
    assert path.is_file(), f"{block.id}: no file {block.argument}"
    assert block.text.rstrip("\n") in path.read_text(), \
        f"{block.id}: the block is not a verbatim excerpt of {block.argument}"
    if block.lang == "python":
        compile(path.read_text(), str(path), "exec")
    if block.lang == "toml":
        tomllib.loads(path.read_text())


def check_toml_parse(block: Block) -> None:
    from rotation.adapters import ENTRY_POINT_GROUP

    data = tomllib.loads(block.text)
    groups = data.get("project", {}).get("entry-points", {})
    for group, entries in groups.items():
        assert group == ENTRY_POINT_GROUP, f"{block.id}: unknown entry-point group {group}"
        for name, target in entries.items():
            assert re.fullmatch(r"[\w.]+:\w+", target), f"{block.id}: {name} = {target}"


def check_file_equal(block: Block) -> None:
    path = ROOT / block.argument
    assert path.is_file(), f"{block.id}: no file {block.argument}"
    if block.lang == "json":
        assert json.loads(block.text) == json.loads(path.read_text()), \
            f"{block.id}: differs from {block.argument}"
    else:
        assert block.text.strip() == path.read_text().strip(), \
            f"{block.id}: differs from {block.argument}"


@cache
def real_failure_line() -> dict[str, Any]:
    """A failure line as the dispatcher writes it: setSecret against a closed port."""
    from rotation import handler
    from rotation.logs import logger
    from rotation.tools.local import LocalRotationService, create_secret, local_stack

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stream = io.StringIO()
    log_handler = logger.registered_handler
    original = log_handler.stream  # type: ignore[attr-defined]
    log_handler.stream = stream  # type: ignore[attr-defined]
    try:
        with local_stack() as client:
            arn = create_secret(client, "docs-failure", json.dumps(
                {"engine": "postgres", "host": "127.0.0.1", "port": port,
                 "username": "app_user", "password": "Docs-Passw0rd-1234"}))
            service = LocalRotationService(client)
            service.enable_rotation(arn)
            handler.reset()
            report = service.rotate(arn, lambda event: handler.lambda_handler(event, None),
                                    steps=("createSecret", "setSecret"))
            handler.reset()
    finally:
        log_handler.stream = original  # type: ignore[attr-defined]
    assert not report.succeeded
    errors = [json.loads(line) for line in stream.getvalue().splitlines()
              if line.startswith("{") and '"level":"ERROR"' in line]
    assert len(errors) == 1, stream.getvalue()
    line: dict[str, Any] = errors[0]
    return line


def check_log_line(block: Block) -> None:
    import rotation.errors

    shown = json.loads(block.text)
    real = real_failure_line()
    assert set(shown) == set(real), f"{block.id}: the keys differ from a real failure line: " \
                                    f"{sorted(set(shown) ^ set(real))}"
    error_class = getattr(rotation.errors, shown["error_class"])
    assert shown["cause"] == error_class.category
    assert shown["fix"] in shown["message"]


def check_block(block: Block) -> None:
    if is_ci_contract(block):
        result = run(["make", "-n", "demo", "test"], timeout=60)
        assert result.returncode == 0, explain(result)
        assert "rotation demo" in result.stdout
        assert "pytest" in result.stdout
        return
    key = (block.lang, block.treatment)
    assert key in TREATMENTS, (
        f"{block.id}: the block has no treatment (info string {block.info!r}); give it one of "
        + ", ".join(sorted(f"{lang} {t}" for lang, t in TREATMENTS)))
    if key == ("console", "run"):
        check_console_run(block)
    elif key == ("sh", "run"):
        result = run(["bash", "-euo", "pipefail", "-c", block.text])
        assert result.returncode == 0, f"{block.id}\n{explain(result)}"
    elif key == ("sh", "check"):
        check_sh_check(block)
    elif block.lang == "python" and block.treatment in ("run", "local-stack"):
        check_python(block)
    elif block.treatment == "excerpt":
        check_excerpt(block)
    elif key == ("toml", "parse"):
        check_toml_parse(block)
    elif block.treatment == "file":
        check_file_equal(block)
    elif key == ("json", "parse"):
        json.loads(block.text)
    elif key == ("json", "log-line"):
        check_log_line(block)
    elif key == ("text", "diagram"):
        assert block.text.strip()


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_block(block: Block) -> None:
    check_block(block)


# -- the scheme itself ---------------------------------------------------------------------------

def test_readme_starts_with_the_ci_contract() -> None:
    # GIVEN the README as committed; THEN its first lines are the two commands CI relies on
    assert README.read_text().startswith(CI_CONTRACT)
    assert is_ci_contract(ALL_BLOCKS[0])


def test_every_doc_has_blocks_and_the_sample_events_are_all_shown() -> None:
    assert {p.name for p in DOCS} >= {"README.md", "migration.md", "secret-format.md",
                                      "troubleshooting.md", "writing-an-adapter.md"}
    shown = {b.argument for b in ALL_BLOCKS if (b.lang, b.treatment) == ("json", "file")}
    samples = {f"examples/secrets/{p.name}"
               for p in (ROOT / "examples" / "secrets").glob("secret-*.json")}
    assert samples <= shown, f"secret samples not in docs/secret-format.md: {samples - shown}"


@pytest.mark.parametrize(("expected", "actual", "ok"), [
    (["a 1.5 ms", "b"], ["a 2.7 ms", "", "b"], True),
    (["a", "b"], ["a", "x", "b"], False),
    (["a", "...", "b"], ["a", "x", "b"], True),
    (["a"], ["a", "b"], False),
    (["a", "..."], ["a", "b"], True),
    (["id 3f8a2c4e at 127.0.0.1:5432"], ["id 0000ffff at 127.0.0.1:40001"], True),
])
def test_transcript_matching(expected: list[str], actual: list[str], ok: bool) -> None:
    assert (matches_transcript(expected, actual) is None) is ok


# -- links and citations -------------------------------------------------------------------------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def github_slug(heading: str) -> str:
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text()
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    return {github_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def prose(path: Path) -> str:
    """The file without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for target in _LINK.findall(prose(path)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, broken


_CITATION = re.compile(r"(tests/[\w/]+\.py)::(\w+)(?:::(\w+))?")


def defines(path: Path, names: list[str]) -> bool:
    tree = ast.parse(path.read_text())
    scopes: list[ast.AST] = [tree]
    for name in names:
        found = [node for scope in scopes for node in ast.walk(scope)
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                 and node.name == name]
        if not found:
            return False
        scopes = list(found)
    return True


def test_every_cited_test_exists() -> None:
    citations = {(path.name, m.group(0)) for path in DOCS
                 for m in _CITATION.finditer(path.read_text())}
    assert len(citations) >= 40
    missing = []
    for doc, citation in sorted(citations):
        file_name, *names = citation.split("::")
        test_file = ROOT / file_name
        if not test_file.is_file() or not defines(test_file, names):
            missing.append(f"{doc}: {citation}")
    assert not missing, missing


# -- troubleshooting -----------------------------------------------------------------------------

CAUSES = ["network", "timeouts", "kms", "json key", "login failures", "libpq", "tls required",
          "python runtime", "rotationtoken", "reserved concurrency", "awspending",
          "rotation not enabled", "secrets manager refuses", "database statement", "unexpected"]
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
ROWS = ["AWS's symptom", "prevented by", "`rotation doctor` check", "error class (`cause`)",
        "message", "evidence"]


@cache
def doctor_check_names() -> frozenset[str]:
    from rotation.config import Settings
    from rotation.tools.doctor import run_doctor
    from rotation.tools.local import local_stack

    with local_stack() as client:
        report = run_doctor(client, "no-such-secret", Settings())
    return frozenset(c.name for c in report.checks)


def troubleshooting_sections() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    parts = re.split(r"^## (\d+\. .+)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def table_row(section: str, label: str) -> str:
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|", 1)]
        if line.startswith("|") and cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r}")


def test_troubleshooting_covers_every_cause() -> None:
    import rotation.errors

    sections = troubleshooting_sections()
    assert [h.split(".")[0] for h, _ in sections] == [str(i) for i in range(1, len(CAUSES) + 1)]
    checks = doctor_check_names()
    for (heading, body), keyword in zip(sections, CAUSES, strict=True):
        assert keyword in heading.lower(), (heading, keyword)
        rows = {label: table_row(body, label) for label in ROWS}
        assert "**Fix.**" in body, heading
        named = re.findall(r"`([a-z0-9-]+)`", rows["`rotation doctor` check"])
        assert named or rows["`rotation doctor` check"].startswith("none"), heading
        assert set(named) <= checks, (heading, set(named) - checks)
        pairs = re.findall(r"`(\w+)` \(`([a-z ]+)`\)", rows["error class (`cause`)"])
        assert pairs or rows["error class (`cause`)"].startswith("none"), heading
        for class_name, cause in pairs:
            assert class_name in rotation.errors.__all__, (heading, class_name)
            assert getattr(rotation.errors, class_name).category == cause, (heading, class_name)
        assert _CITATION.search(rows["evidence"]), heading


_ERROR_PAIR = re.compile(r"`(\w+)` \(`([a-z ]+)`\)")


def error_categories() -> dict[str, str]:
    """Every error class of rotation/errors.py -> its ``category`` (the log line's ``cause``)."""
    import rotation.errors

    return {name: getattr(rotation.errors, name).category for name in rotation.errors.__all__}


def cause_table_problems(text: str) -> list[str]:
    """What is wrong with the `cause` table of troubleshooting.md (``text``): a cause the code has
    without its row, a row for no cause, a link to no section, a link to a section whose error
    classes have another cause, an error class no linked section names."""
    sections = {github_slug(heading): body for heading, body in re.findall(
        r"^## (\d+\. [^\n]+)$(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)}
    start = text.index("**The `cause` field**")
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text[start:].split("\n\n", 2)[1].splitlines() if line.startswith("|")]
    table: dict[str, list[str]] = {}
    problems = []
    for row in rows[2:]:  # past the header and its rule
        causes = code_spans(row[0])
        if len(causes) != 1:
            problems.append(f"a row must name one cause: {row[0]}")
            continue
        table[causes[0]] = _LINK.findall(row[1])
    categories = error_categories()
    problems += [f"no row for cause `{c}`" for c in sorted(set(categories.values()) - set(table))]
    problems += [f"a row for `{c}`, which no error class has" for c in sorted(
        set(table) - set(categories.values()))]
    named: set[str] = set()
    for cause, links in table.items():
        if not links:
            problems.append(f"`{cause}` links to no section")
        for link in links:
            body = sections.get(link.removeprefix("#")) if link.startswith("#") else None
            if body is None:
                problems.append(f"`{cause}` links to {link}, not a numbered section of this page")
                continue
            pairs = _ERROR_PAIR.findall(table_row(body, "error class (`cause`)"))
            if cause not in {category for _, category in pairs}:
                problems.append(f"`{cause}` links to {link}, whose error classes have other causes:"
                                f" {pairs}")
            named |= {name for name, category in pairs if category == cause}
    problems += [f"{name} (`{category}`) is in no section its cause's row links to"
                 for name, category in sorted(categories.items()) if name not in named]
    return problems


def test_the_cause_table_sends_each_cause_to_the_sections_that_treat_it() -> None:
    # GIVEN the `cause` table at the top of docs/troubleshooting.md and rotation/errors.py
    # WHEN each row's links are followed to their sections' error classes
    problems = cause_table_problems(TROUBLESHOOTING.read_text())

    # THEN every cause the code has has a row, every link lands on a section naming an error of
    # that cause, and every error class is found from its cause's row
    assert problems == []


@pytest.mark.parametrize(("row", "stale"), [
    # the table before this check: staging labels (so "rotation not enabled") sent to section 11
    ("| `staging labels` |", "| `staging labels` | [11. Stuck AWSPENDING]"
                             "(#11-stuck-awspending-a-previous-rotation-isnt-complete) |"),
    # a row sent to the wrong section
    ("| `database` |", "| `database` | [7. TLS required](#7-tls-required-or-not-verifiable) |"),
    # a row lost
    ("| `event` |", ""),
    # a row to a section that does not exist
    ("| `aws` |", "| `aws` | [16. Nowhere](#16-nowhere) |"),
])
def test_the_cause_table_check_catches_a_stale_row(row: str, stale: str) -> None:
    # GIVEN the page with one row of the cause table replaced
    lines = TROUBLESHOOTING.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith(row))
    lines[index] = stale + "\n" if stale else ""

    # WHEN / THEN the check reports it
    assert cause_table_problems("".join(lines)) != []


# -- the README's reference tables ---------------------------------------------------------------

def markdown_table(path: Path, heading: str) -> list[list[str]]:
    """The first table after ``heading``: its body rows as lists of cells."""
    text = prose(path)
    start = text.index(heading)
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return [r for r in rows[1:] if not all(set(c) <= {"-", " ", ":"} for c in r)]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_environment_table_matches_the_code_and_the_template() -> None:
    import rotation.config as config
    from rotation.metrics import DEFAULT_NAMESPACE

    rows = {code_spans(r[0])[0]: r for r in markdown_table(README, "### Environment variables")}
    # every variable the code reads, and every one the template sets, has a row
    read = {v for k, v in vars(config).items()
            if k.isupper() and isinstance(v, str) and re.fullmatch(r"[A-Z_]+", v)}
    function = template()["Resources"]["RotationFunction"]["Properties"]
    in_template = function["Environment"]["Variables"]
    assert read | set(in_template) | {"POWERTOOLS_METRICS_DISABLED"} == set(rows)
    # the defaults are the code's
    settings, policy = config.Settings(), config.PasswordPolicy()
    defaults: dict[str, object] = {
        config.STRATEGY: settings.strategy, config.CONNECT_TIMEOUT: settings.connect_timeout,
        config.DUAL_PASSWORD: False,  # the deprecated alias asks for nothing unless "true"
        config.PASSWORD_LENGTH: policy.length, config.EXCLUDE_CHARACTERS: policy.exclude_characters,
        config.EXCLUDE_NUMBERS: policy.exclude_numbers,
        config.EXCLUDE_PUNCTUATION: policy.exclude_punctuation,
        config.EXCLUDE_UPPERCASE: policy.exclude_uppercase,
        config.EXCLUDE_LOWERCASE: policy.exclude_lowercase,
        config.REQUIRE_EACH_INCLUDED_TYPE: policy.require_each_included_type,
        "POWERTOOLS_METRICS_NAMESPACE": DEFAULT_NAMESPACE, "POWERTOOLS_SERVICE_NAME": "rotation",
        "POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_METRICS_DISABLED": False,
    }
    for name, default in defaults.items():
        assert code_spans(rows[name][1])[:1] == [_shown(default)], (name, rows[name][1])
    for name in (config.CA_BUNDLE, config.ENDPOINT):
        assert settings_default_is_none(name), name
        assert rows[name][1].startswith("none"), name
    # the template-parameter column names the parameter the template passes
    for name, row in rows.items():
        value = in_template.get(name)
        if value is None:
            assert row[2] == "not exposed", (name, row[2])
        elif isinstance(value, str):
            assert code_spans(row[2]) == [value], (name, row[2])
        else:
            assert code_spans(row[2]) == [first_ref(value)], (name, row[2])


def settings_default_is_none(name: str) -> bool:
    import rotation.config as config

    settings = config.Settings()
    return {config.CA_BUNDLE: settings.ca_bundle, config.ENDPOINT: settings.endpoint_url}[name] \
        is None


def first_ref(value: Any) -> str:
    if isinstance(value, dict):
        if "Ref" in value and not str(value["Ref"]).startswith("AWS::"):
            return str(value["Ref"])
        for item in value.values():
            found = first_ref(item)
            if found:
                return found
    if isinstance(value, list):
        for item in value:
            found = first_ref(item)
            if found:
                return found
    return ""


def test_parameter_table_matches_the_template() -> None:
    rows = {code_spans(r[0])[0]: r for r in markdown_table(README, "### Template parameters")}
    parameters = template()["Parameters"]
    assert list(rows) == list(parameters)
    for name, spec in parameters.items():
        cell = rows[name][1]
        if "Default" not in spec:
            assert cell == "required", name
        elif spec["Default"] == "":
            assert cell.startswith("empty"), name
        else:
            assert code_spans(cell)[:1] == [str(spec["Default"])], (name, cell)


def test_mysql_plugin_table_is_the_adapters() -> None:
    import rotation.adapters.mysql.server as mysql

    def rows(lines: list[str]) -> list[list[str]]:
        return [[c.strip() for c in line.replace("``", "`").strip().strip("|").split("|")]
                for line in lines if line.strip().startswith("| ")]

    docstring = (mysql.__doc__ or "").splitlines()
    start = next(i for i, line in enumerate(docstring) if line.strip().startswith("| plugin"))
    source = rows(list(_take_table(docstring[start:])))
    readme = prose(README).splitlines()
    start = next(i for i, line in enumerate(readme) if line.startswith("| plugin"))
    assert rows(list(_take_table(readme[start:]))) == source


def _take_table(lines: list[str]) -> Iterator[str]:
    for line in lines:
        if not line.strip().startswith("|"):
            return
        if not set(line.strip()) <= {"|", "-", " ", ":"}:
            yield line


def test_log_fields_name_every_cause_and_the_metrics_the_code_emits() -> None:
    import rotation.errors

    fields = {code_spans(r[0])[0]: r for r in markdown_table(README, "**Log lines.**")}
    causes = set(code_spans(fields["cause"][2]))
    categories = {getattr(rotation.errors, name).category for name in rotation.errors.__all__}
    assert categories <= causes, categories - causes
    metrics = {span for r in markdown_table(README, "**Metrics**") for span in code_spans(r[0])}
    emitted = set(re.findall(r'"((?:Step|Rotation)[A-Z]\w+)"',
                             (ROOT / "rotation" / "metrics.py").read_text()))
    assert metrics == emitted


# Upper-case names in the docs that are not the function's environment variables.
ALSO_KNOWN = {"LOG_LEVEL", "AWS_DEFAULT_REGION", "SECRET_ID",  # alias; boto3's; a placeholder
              "BUNDLE_BOTO3", "APPLICATION_PASSWORD_ADMIN", "AURORA_VERSION"}  # make; MySQL


def test_environment_variables_named_in_the_docs_exist() -> None:
    rows = {code_spans(r[0])[0] for r in markdown_table(README, "### Environment variables")}
    named = {word for path in DOCS for span in code_spans(prose(path))
             for word in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", span)}
    assert named - rows - ALSO_KNOWN == set()


# -- template parameters named in the docs -------------------------------------------------------

# A code span that is one camelCase or PascalCase word (`AdditionalLayerArns`, `kmsKeyArn`), or
# such a word with a value (`Engine=postgres`).
_NAMED = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:=(\S*))?")
# Saying a span is a parameter: "the `Engine` parameter", "`Timeout` (stack parameter)",
# "parameter `CaBundle`". With "stack" or "template" it must be a template parameter; without,
# it may also be an AWS API's ("the `RotationToken` parameter").
_CALLED_A_PARAMETER = re.compile(
    r"`([^`]+)`,? (?:\(((?:stack |template )?)parameter\)|((?:stack |template )?)parameters?\b)"
    r"|\b((?:stack |template )?)parameters? `([^`]+)`")
# Saying the template has no parameter for something. Such a claim goes stale silently when the
# parameter is added, so each one must be listed in ABSENCE_CLAIMS with a check on the template.
_ABSENCE = re.compile(r"\b(?:no|not an?|without an?|lacks an?|nor an?) (?:(?:template|stack|SAM|"
                      r"CloudFormation) )?parameters?\b(?! startup)|\bparameters? (?:does not|"
                      r"doesn't|do not|don't) exist", re.IGNORECASE)
# sentence fragment -> a check that the claim holds for template.yaml's Parameters
ABSENCE_CLAIMS: dict[str, Callable[[dict[str, Any]], bool]] = {}
# camelCase / PascalCase names in the docs that no module, template or AWS service model here
# defines: each is checked by hand, with why it is not a template parameter.
NAMED_ELSEWHERE = {
    "SSLRequest": "PostgreSQL's wire-protocol message",
    "SecretRotation": "the AWS CDK construct",
    "SecretsManagerRDSMariaDBRotationMultiUser": "a SAR app",
    "SecretsManagerRDSMariaDBRotationSingleUser": "a SAR app",
    "SecretsManagerRDSMySQLRotationMultiUser": "a SAR app",
    "SecretsManagerRDSMySQLRotationSingleUser": "a SAR app",
    "SecretsManagerRDSPostgreSQLRotationMultiUser": "a SAR app",
    "SecretsManagerRDSPostgreSQLRotationSingleUser": "a SAR app",
    # AWS's sample functions for engines without an adapter here (docs/migration.md; the
    # names are aws-samples/aws-secrets-manager-rotation-lambdas' folders)
    **{f"SecretsManager{engine}Rotation{scheme}": "an AWS sample function"
       for engine in ("RDSOracle", "RDSSQLServer", "Redshift", "MongoDB", "RDSDb2")
       for scheme in ("SingleUser", "MultiUser")},
    "dbInstanceIdentifier": "the RDS-generated secret's key",
}
AWS_SERVICES = ("secretsmanager", "lambda", "kms", "rds")  # the APIs the docs name things from


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str | int | float | bool):
        yield str(value)


@cache
def names_that_are_not_parameters() -> frozenset[str]:
    """Every name the docs may use for something other than a template parameter: the template's
    resources, outputs, conditions, properties and values; the identifiers of the code and the
    tests and the code's string constants; AWS's operation, shape and member names; builtins."""
    import builtins

    known: set[str] = set(dir(builtins))
    for section, body in template().items():
        if section == "Parameters":
            known.update(str(v) for spec in body.values()
                         for v in [spec.get("Default", ""), *spec.get("AllowedValues", [])])
        else:
            known.update(_strings(body))
    for folder in ("rotation", "examples", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    known.add(node.name)
                elif isinstance(node, ast.Name):
                    known.add(node.id)
                elif isinstance(node, ast.Attribute):
                    known.add(node.attr)
                elif isinstance(node, ast.alias):
                    known.update(node.name.split("."))
                elif isinstance(node, ast.keyword) and node.arg:
                    known.add(node.arg)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and folder != "tests":
                    known.add(node.value)
    return frozenset((known | aws_api_names()) - set(template()["Parameters"]))


@cache
def aws_api_names() -> frozenset[str]:
    """The operation, shape and member names of the AWS APIs the docs talk about."""
    import botocore.session

    session = botocore.session.get_session()
    names: set[str] = set()
    for service in AWS_SERVICES:
        model = session.get_service_model(service)
        names.update(model.operation_names)
        for shape_name in model.shape_names:
            names.add(shape_name)
            names.update(getattr(model.shape_for(shape_name), "members", {}))
    return frozenset(names)


def parameter_problems(path: Path, text: str) -> list[str]:
    """What ``text`` (a doc's prose) says about template parameters that the template denies."""
    parameters = template()["Parameters"]
    problems = []
    for span in code_spans(text):
        match = _NAMED.fullmatch(span)
        if not match or not re.search(r"[a-z]", match[1]) or not re.search(r"[A-Z]", match[1]):
            continue
        name, value = match[1], match[2]
        if name in parameters:
            if value is not None:
                try:
                    check_parameter_value(name, value)
                except AssertionError as exc:
                    problems.append(f"{path.name}: `{span}`: {exc}")
        elif name not in names_that_are_not_parameters() and name not in NAMED_ELSEWHERE:
            problems.append(f"{path.name}: `{span}` is not a parameter of template.yaml, nor a "
                            "name of its resources, of the code or of an AWS API (a renamed "
                            "parameter?)")
    for match in _CALLED_A_PARAMETER.finditer(text):
        name = (match[1] or match[5]).partition("=")[0]
        of_the_stack = bool(match[2] or match[3] or match[4])
        if name not in parameters and (of_the_stack or name not in aws_api_names()):
            problems.append(f"{path.name}: {match[0]!r}: template.yaml has no parameter {name}")
    for sentence in re.split(r"(?<=[.;:!?])\s+", re.sub(r"\s+", " ", text)):
        if _ABSENCE.search(sentence):
            check = next((c for fragment, c in ABSENCE_CLAIMS.items() if fragment in sentence),
                         None)
            if check is None:
                problems.append(f"{path.name}: {sentence!r} says the template lacks a parameter: "
                                "check it and list it in ABSENCE_CLAIMS with a check")
            elif not check(parameters):
                problems.append(f"{path.name}: {sentence!r} no longer holds for template.yaml")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_template_parameters_named_in_the_docs_exist(path: Path) -> None:
    # GIVEN a doc's prose (its blocks are checked by their treatment: `sam` against the template)
    # WHEN every parameter-like name, `Name=value`, "`X` parameter" and "no parameter for ..." in
    # it is compared with template.yaml
    problems = parameter_problems(path, prose(path))

    # THEN the doc names only parameters the template has, with values it accepts, and claims no
    # parameter is missing where one exists
    assert problems == []


@pytest.mark.parametrize("stale", [
    # the claim docs/writing-an-adapter.md made while AdditionalLayerArns existed
    "`template.yaml` attaches only the driver layer of its `Engine` parameter and has no "
    "parameter for extra layers: add your layer to `RotationFunction`'s `Layers`.",
    "Pass your layers in `AdditionalLayers`.",  # a renamed (or misspelt) parameter
    "Deploy with `Engine=oracle`.",  # a value the template refuses
    "the `LayerArns` parameter",
    "`RotationToken` (stack parameter)",  # an API's parameter, called the stack's
    "there is no template parameter for the CA bundle.",
])
def test_the_parameter_check_catches_stale_claims(stale: str) -> None:
    assert parameter_problems(README, stale) != []


@pytest.mark.parametrize("sound", [
    "Deploy with `Engine=postgres` and your layers in `AdditionalLayerArns`.",
    "raise `Timeout` (stack parameter)",
    "the `RotationToken` parameter of `PutSecretValue`",  # an AWS API's parameter
    "RDS's `dbInstanceIdentifier`, the `RotationFunction` resource, `PasswordRefusedError`",
    "no `options` startup parameter",
])
def test_the_parameter_check_accepts_sound_prose(sound: str) -> None:
    assert parameter_problems(README, sound) == []


def test_every_absence_claim_check_is_used() -> None:
    text = " ".join(re.sub(r"\s+", " ", prose(path)) for path in DOCS)
    assert [fragment for fragment in ABSENCE_CLAIMS if fragment not in text] == []


# -- the checkers catch rot ----------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    "aws secretsmanager rotate-secret --secret-id s --rotation-lambda-arn-typo x",
    "aws secretsmanager rotate-secrets --secret-id s",
    "aws secretsmanager rotate-secret --secret-id s --rotation-rules '{\"Schedule\": \"x\"}'",
    "aws secretsmanager update-secret-version-stage --secret-id s",  # --version-stage required
    "aws lambda put-function-concurrency --function-name f --reserved-concurrent-executions ten",
    "sam deploy --parameter-overrides NoSuchParameter=1",
    "sam deploy --parameter-overrides Runtime=python3.9",
    "sam deploy --parameter-overrides ReservedConcurrency=5",
    "sam deploy --no-such-option",
    "sam local invoke NoSuchFunction -e events/createSecret.json",
    "sam local invoke RotationFunction -e events/noSuchEvent.json",
    "rotation doctor",  # SECRET_ID is required
    "rotation rotate s --no-such-option",
    "make no-such-target",
    "curl -o x https://example.com/global-bundle.pem",
    "terraform apply",
])
def test_checkers_refuse_a_rotten_command(command: str) -> None:
    block = Block(README, 0, "sh check", command + "\n")
    with pytest.raises(AssertionError):
        check_sh_check(block)


def test_a_block_without_treatment_fails() -> None:
    with pytest.raises(AssertionError, match="no treatment"):
        check_block(Block(ROOT / "docs" / "x.md", 1, "sh", "echo hi\n"))


def test_code_map_names_every_module_and_only_existing_ones() -> None:
    # GIVEN README's code map
    text = README.read_text()
    section = text[text.index("## Code map"):]
    section = section[:section.index("\n## ", 1)]
    named = set(re.findall(r"`(rotation/[\w/]+\.py)`", section))

    # WHEN it is compared with the package's modules (package __init__ files but the root's
    # and the tools' are listed as their package)
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "rotation").rglob("*.py")}
    expected = modules - {"rotation/__init__.py", "rotation/tools/__init__.py"}

    # THEN every module has its line, and every line names a module that exists
    assert sorted(expected - named) == [], "modules missing from README's code map"
    assert sorted(named - modules) == [], "README's code map names modules that do not exist"
