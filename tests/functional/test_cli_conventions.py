"""The command line's conventions, across its subcommands: global options before or after the
subcommand, one boto3 session (``--profile``, ``--region``, the region of an ARN) for every
client, ``--json`` everywhere with one document on stdout, exit codes 0/1/2/3, ``-e`` for events,
secret samples and step events kept apart, and ``doctor --local`` / ``--remote``.

AWS is moto (in-process), a closed local port, or no credentials at all; the database is the
in-memory one."""

from __future__ import annotations

import json
import socket
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
import pytest
from botocore.awsrequest import AWSResponse

import rotation.tools.aws_options
import rotation.tools.consumers
from rotation.diagnosis import CheckResult, DoctorReport
from rotation.errors import LoginError
from rotation.tools.cli import build_parser, main, subcommands
from tests.conftest import EVENTS, ROOT, LeakScan
from tests.functional.fake_local_stack import install_fake_stack
from tests.functional.fakes import FakeDatabase

SAMPLES = ROOT / "examples" / "secrets"
EVENT = str(EVENTS / "setSecret.json")

#: the smallest valid arguments of each subcommand; a new subcommand must be added here
MINIMAL: dict[str, list[str]] = {
    "invoke": ["-e", EVENT],
    "rotate": ["app/db"],
    "doctor": ["app/db"],
    "demo": [],
    "policy": ["app/db", "--for", "lambda"],
    "consumers": ["app/db"],
}

#: the commands that talk to AWS, with arguments that make them call it
AWS_COMMANDS: dict[str, list[str]] = {
    "invoke": ["invoke", "-e", EVENT],
    "rotate": ["rotate", "app/db", "--timeout", "1"],
    "doctor": ["doctor", "app/db", "--no-function", "--timeout", "1"],
    "doctor --remote": ["doctor", "app/db", "--remote"],
    "policy": ["policy", "app/db", "--for", "lambda"],
    "consumers": ["consumers", "app/db"],
}


def output(capsys: pytest.CaptureFixture[str], leak_scan: LeakScan) -> tuple[str, str]:
    out, err = capsys.readouterr()
    leak_scan.add_text(out)
    leak_scan.add_text(err)
    return out, err


def with_secret(argv: list[str], secret_id: str) -> list[str]:
    """``argv`` with its SECRET_ID (``app/db``) replaced."""
    return [secret_id if arg == "app/db" else arg for arg in argv]


def placed(argv: list[str], options: list[str], where: str) -> list[str]:
    return [*options, *argv] if where == "before" else [*argv, *options]


# -- the parser ----------------------------------------------------------------------------------

def test_every_subcommand_has_minimal_arguments_here() -> None:
    # GIVEN / WHEN the parser's subcommands are listed / THEN each is covered by the tests below
    assert sorted(subcommands(build_parser())) == sorted(MINIMAL)


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("command", sorted(subcommands(build_parser())))
def test_global_options_mean_the_same_before_or_after_the_subcommand(command: str,
                                                                    where: str) -> None:
    # GIVEN the global options, before or after a subcommand and its arguments
    options = ["--profile", "dev", "--region", "eu-west-2", "--endpoint-url",
               "https://vpce.example.com", "--json"]
    argv = [*options, command, *MINIMAL[command]] if where == "before" else \
        [command, *MINIMAL[command], *options]

    # WHEN parsed
    args = build_parser().parse_args(argv)

    # THEN every one arrived (the subcommand's defaults do not reset a value given before it)
    assert (args.profile, args.region, args.endpoint_url, args.json) == (
        "dev", "eu-west-2", "https://vpce.example.com", True)


@pytest.mark.parametrize("command", sorted(subcommands(build_parser())))
def test_every_subcommand_documents_the_global_options(command: str,
                                                       capsys: pytest.CaptureFixture[str],
                                                       leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a subcommand's --help
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])

    # THEN it lists --json and the AWS options
    out, _ = output(capsys, leak_scan)
    assert info.value.code == 0
    for option in ("--json", "--profile NAME", "--region REGION", "--endpoint-url URL"):
        assert option in out, option


@pytest.mark.parametrize("command", sorted(subcommands(build_parser())))
def test_a_usage_error_under_json_is_a_json_document(command: str,
                                                     capsys: pytest.CaptureFixture[str],
                                                     leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a subcommand with --json and an option it does not have
    with pytest.raises(SystemExit) as info:
        main([command, *MINIMAL[command], "--json", "--no-such-option"])

    # THEN exit 2, the usage on stderr, and the error document on stdout (--json was accepted)
    out, err = output(capsys, leak_scan)
    document = json.loads(out)
    assert info.value.code == 2
    assert f"usage: rotation {command}" in err
    assert document["exit_code"] == 2
    assert document["error"] == "unrecognized arguments: --no-such-option"
    assert document["fix"] == f"see `rotation {command} --help`"


@pytest.mark.parametrize(("argv", "message"), [
    (["invoke", EVENT, "-e", EVENT], "give the event once"),
    (["invoke"], "an event file is required: -e EVENT.json"),
    (["invoke", EVENT, "--secret", "x.json"], "--secret and --engine only apply with --local"),
    (["rotate", "app/db", "--engine", "mysql"], "--secret and --engine only apply with --local"),
    (["doctor", "app/db", "--remote", "--fix"], "--remote runs the checks in the deployed"),
    (["doctor", "--remote", "--local"], "--remote runs the checks in the deployed"),
    (["doctor", "--local", "--function-name", "f"], "--function-name does not apply with --local"),
    (["policy", "app/db", "--for", "lambda", "--endpoint-url", "vpce"], "not an http(s) URL"),
])
def test_conflicting_options_are_usage_errors(argv: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str],
                                              leak_scan: LeakScan) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    _, err = output(capsys, leak_scan)
    assert info.value.code == 2
    assert f"usage: rotation {argv[0]}" in err
    assert message in err


# -- one session for every client ----------------------------------------------------------------

@dataclass
class SessionSpy:
    """The sessions commands made (profile, region) and every client built from any session."""

    made: list[tuple[str | None, str | None]] = field(default_factory=list)
    sessions: list[boto3.Session] = field(default_factory=list)
    clients: list[tuple[int, str]] = field(default_factory=list)

    def services(self) -> set[str]:
        return {service for _, service in self.clients}

    def all_from_the_one_session(self) -> bool:
        return len(self.sessions) == 1 and {s for s, _ in self.clients} == {id(self.sessions[0])}


@pytest.fixture
def session_spy(sm: Any, monkeypatch: pytest.MonkeyPatch) -> SessionSpy:
    """Records the CLI's session factory; its sessions ignore the profile (moto answers)."""
    spy = SessionSpy()
    real_client = boto3.session.Session.client

    def new_session(profile: str | None, region: str | None) -> boto3.Session:
        spy.made.append((profile, region))
        session = boto3.Session(region_name=region or "us-east-1")
        spy.sessions.append(session)
        return session

    def client(self: boto3.Session, *args: Any, **kwargs: Any) -> Any:
        spy.clients.append((id(self), args[0] if args else kwargs["service_name"]))
        return real_client(self, *args, **kwargs)

    monkeypatch.setattr(rotation.tools.aws_options, "new_session", new_session)
    monkeypatch.setattr(boto3.session.Session, "client", client)
    return spy


#: the services each command builds clients for, against a secret that does not exist
SERVICES = {"invoke": {"secretsmanager"}, "rotate": {"secretsmanager"},
            "doctor": {"secretsmanager"}, "doctor --remote": {"secretsmanager"},
            "policy": {"secretsmanager", "kms"},
            "consumers": {"secretsmanager", "ecs", "batch", "lambda", "iam", "kms"}}


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("command", sorted(AWS_COMMANDS))
def test_profile_and_region_reach_every_client(command: str, where: str,
                                               session_spy: SessionSpy,
                                               capsys: pytest.CaptureFixture[str],
                                               leak_scan: LeakScan) -> None:
    # GIVEN --profile and --region before or after the subcommand
    argv = placed(AWS_COMMANDS[command], ["--profile", "dev", "--region", "eu-west-2"], where)

    # WHEN the command runs (the secret does not exist: it fails, after building its clients)
    main(argv)
    output(capsys, leak_scan)

    # THEN one session got the profile and region, and every client came from it (for invoke,
    # the function's own client too); --region beats the region of the event's ARN
    assert session_spy.made == [("dev", "eu-west-2")]
    assert session_spy.all_from_the_one_session(), session_spy.clients
    assert session_spy.services() == SERVICES[command]


@pytest.mark.parametrize("command", sorted(AWS_COMMANDS))
def test_region_comes_from_a_full_arn(command: str, session_spy: SessionSpy, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str],
                                      leak_scan: LeakScan) -> None:
    # GIVEN a full ARN in eu-west-3 as SECRET_ID (for invoke: as the event's SecretId), and no
    # --region
    arn = "arn:aws:secretsmanager:eu-west-3:123456789012:secret:app/db-AbCdEf"
    argv = with_secret(AWS_COMMANDS[command], arn)
    if command == "invoke":
        event = {**json.loads(Path(EVENT).read_text()), "SecretId": arn}
        (tmp_path / "event.json").write_text(json.dumps(event))
        argv = ["invoke", "-e", str(tmp_path / "event.json")]

    # WHEN the command runs
    main(argv)
    output(capsys, leak_scan)

    # THEN the session is in the ARN's region
    assert session_spy.made == [(None, "eu-west-3")]


@pytest.mark.parametrize(("argv", "region"), [
    (["doctor", "app/db", "--no-function", "--function-name",
      "arn:aws:lambda:ap-south-1:123456789012:function:rotation"], "ap-south-1"),
    (["doctor", "app/db", "--no-function"], None),  # the profile's or the environment's
])
def test_region_of_the_function_arn_or_the_default(argv: list[str], region: str | None,
                                                   session_spy: SessionSpy,
                                                   capsys: pytest.CaptureFixture[str],
                                                   leak_scan: LeakScan) -> None:
    main(argv)
    output(capsys, leak_scan)
    assert session_spy.made == [(None, region)]


@pytest.fixture
def aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file with profile `dev` (eu-west-2, its own keys); no region in the
    environment."""
    config = tmp_path / "config"
    config.write_text("[profile dev]\nregion = eu-west-2\naws_access_key_id = testing\n"
                      "aws_secret_access_key = testing\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    return config


@pytest.fixture
def moto_without_region(aws_config: Path) -> Iterator[None]:
    """moto, with no region in the environment (the profile's is the one that applies)."""
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_real_profile_decides_the_region(where: str, moto_without_region: None,
                                           capsys: pytest.CaptureFixture[str],
                                           leak_scan: LeakScan) -> None:
    # GIVEN a secret in eu-west-2 only, the region of profile `dev`
    arn = boto3.client("secretsmanager", region_name="eu-west-2").create_secret(
        Name="app/db", SecretString="{}")["ARN"]

    # WHEN the policy and the consumers of `app/db` are asked for with --profile dev
    policy_code = main(placed(["policy", "app/db", "--for", "lambda"], ["--profile", "dev"],
                              where))
    policy, _ = output(capsys, leak_scan)
    consumers_code = main(placed(["consumers", "app/db", "--json"], ["--profile", "dev"],
                                 where))
    consumers, _ = output(capsys, leak_scan)

    # THEN both found it there
    assert (policy_code, consumers_code) == (0, 0)
    assert json.loads(policy)["Statement"][0]["Resource"] == arn
    assert json.loads(consumers)["secret"]["arn"] == arn


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("command", sorted(AWS_COMMANDS))
def test_an_unknown_profile_could_not_run(command: str, where: str, aws_config: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a profile the config file does not have
    code = main(placed(AWS_COMMANDS[command], ["--profile", "nope", "--json"], where))

    # THEN exit 3, saying which profile and which file, on stderr and as the JSON document
    out, err = output(capsys, leak_scan)
    assert code == 3, err
    assert f"error: profile nope not found in {aws_config}" in err
    assert "fix: add it (`aws configure --profile nope`" in err
    assert json.loads(out)["exit_code"] == 3


# -- exit codes: 1 (what was examined is wrong) vs 3 (could not run) -----------------------------

@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credential anywhere botocore looks (environment, files, instance metadata)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


#: the commands whose only AWS calls go to Secrets Manager before the first failure
SM_COMMANDS = {name: argv for name, argv in AWS_COMMANDS.items() if name != "doctor --remote"}


@pytest.mark.parametrize("command", sorted(SM_COMMANDS))
def test_no_credentials_could_not_run(command: str, no_credentials: None,
                                      capsys: pytest.CaptureFixture[str],
                                      leak_scan: LeakScan) -> None:
    code = main([*SM_COMMANDS[command], "--region", "us-east-1"])
    _, err = output(capsys, leak_scan)
    assert code == 3, err
    assert "no usable AWS credentials (NoCredentialsError)" in err
    assert "aws sso login" in err


@pytest.mark.parametrize("command", sorted(SM_COMMANDS))
def test_an_unreachable_endpoint_could_not_run(command: str, closed_port: int,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               leak_scan: LeakScan) -> None:
    # GIVEN credentials, and --endpoint-url on a port nothing listens on
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")

    # WHEN the command runs (as JSON)
    code = main([*SM_COMMANDS[command], "--region", "us-east-1", "--json",
                 "--endpoint-url", f"http://127.0.0.1:{closed_port}"])

    # THEN exit 3, naming the endpoint problem, in the one JSON document too
    out, err = output(capsys, leak_scan)
    assert code == 3, err
    assert "cannot reach the AWS endpoint: EndpointConnectionError" in err
    document = json.loads(out)
    assert document["exit_code"] == 3
    assert "EndpointConnectionError" in document["error"]


@pytest.fixture
def refusing(sm: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], None]:
    """Make the command's session answer ``operation`` with an error ``code``."""

    def refuse(operation: str, code: str) -> None:
        def new_session(profile: str | None, region: str | None) -> boto3.Session:
            session = boto3.Session(region_name=region or "us-east-1")
            session.events.register(
                f"before-call.*.{operation}",
                lambda **_: (AWSResponse("https://local", 400, {}, None),
                             {"Error": {"Code": code, "Message": "refused by the test"}}))
            return session

        monkeypatch.setattr(rotation.tools.aws_options, "new_session", new_session)

    return refuse


@pytest.mark.parametrize(("command", "operation", "code", "exit_code"), [
    ("doctor", "DescribeSecret", "AccessDeniedException", 3),
    ("doctor", "DescribeSecret", "ThrottlingException", 3),
    ("doctor", "DescribeSecret", "ResourceNotFoundException", 1),
    ("rotate", "RotateSecret", "AccessDeniedException", 3),
    ("rotate", "RotateSecret", "ResourceNotFoundException", 1),
    ("policy", "DescribeSecret", "AccessDeniedException", 3),
    ("policy", "DescribeSecret", "ResourceNotFoundException", 1),
    ("consumers", "DescribeSecret", "AccessDeniedException", 3),
    ("invoke", "DescribeSecret", "ThrottlingException", 3),
    # inside the step invoke runs, AccessDenied is the step's failure, not the command's
    ("invoke", "DescribeSecret", "AccessDeniedException", 1),
])
def test_the_commands_own_call_refused(command: str, operation: str, code: str,
                                       exit_code: int,
                                       refusing: Callable[[str, str], None],
                                       capsys: pytest.CaptureFixture[str],
                                       leak_scan: LeakScan) -> None:
    # GIVEN the command's first call answered with an error
    refusing(operation, code)

    # WHEN the command runs
    result = main(AWS_COMMANDS[command])

    # THEN a refusal or throttling of its own call means it could not run; a missing secret is
    # a finding
    out, err = output(capsys, leak_scan)
    assert result == exit_code, err
    assert code in out + err


def test_a_failing_check_is_1_a_passing_doctor_is_0(
        local_doctor: Callable[..., tuple[int, str, str]], fake_db: FakeDatabase) -> None:
    # GIVEN / WHEN the doctor on a healthy local secret, then on one whose login is refused
    assert local_doctor()[0] == 0
    fake_db.fail_next["connect"] = LoginError("password authentication failed")
    code, out, _ = local_doctor()

    # THEN a failing check is exit 1
    assert code == 1
    assert "FAIL  db-login" in out


# -- invoke: -e, and secret samples vs step events -----------------------------------------------

@pytest.fixture
def fake_db(db: FakeDatabase, monkeypatch: pytest.MonkeyPatch,
            listener: int) -> FakeDatabase:
    return install_fake_stack(db, monkeypatch, port=listener)


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("spelling", [["-e", EVENT], ["--event", EVENT], [EVENT]])
def test_invoke_takes_the_event_as_sam_spells_it(spelling: list[str], fake_db: FakeDatabase,
                                                 capsys: pytest.CaptureFixture[str],
                                                 leak_scan: LeakScan) -> None:
    # GIVEN / WHEN setSecret.json replayed with -e, --event or positionally
    code = main(["invoke", "--local", *spelling])

    # THEN the same replay
    out, err = output(capsys, leak_scan)
    assert code == 0, out + err
    assert f"replaying setSecret from {EVENT}" in out
    assert "> ok  setSecret" in out


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.json")))
@pytest.mark.parametrize("local", [[], ["--local"]], ids=["aws", "local"])
def test_invoke_refuses_a_secret_sample_as_event(sample: str, local: list[str],
                                                 capsys: pytest.CaptureFixture[str],
                                                 leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a secret sample given as the event
    path = str(SAMPLES / sample)
    code = main(["invoke", *local, "-e", path])

    # THEN a usage error that says where it belongs
    _, err = output(capsys, leak_scan)
    assert code == 2
    assert (f"error: {path} is a secret sample, not a step event: pass it with --local "
            "--secret FILE, or use events/<step>.json") in err


@pytest.mark.parametrize("command", [["invoke", "--local", "-e", EVENT], ["rotate", "--local"],
                                     ["doctor", "--local"]])
def test_secret_refuses_a_step_event(command: list[str], fake_db: FakeDatabase,
                                     capsys: pytest.CaptureFixture[str],
                                     leak_scan: LeakScan) -> None:
    # GIVEN / WHEN a step event given as the secret sample, with --json
    code = main([*command, "--secret", EVENT, "--json"])

    # THEN a usage error, as the JSON document too; nothing ran
    out, err = output(capsys, leak_scan)
    assert code == 2
    assert f"error: {EVENT} is a step event, not a secret sample" in err
    assert "examples/secrets/secret-postgres.json with --secret" in err
    document = json.loads(out)
    assert document["exit_code"] == 2
    assert "is a step event" in document["error"]
    assert fake_db.logins["ok"] == 0


# -- --json on every subcommand ------------------------------------------------------------------

def test_invoke_json_against_the_service(rig: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         leak_scan: LeakScan) -> None:
    # GIVEN a secret whose rotation the service started (AWSPENDING staged)
    import uuid

    token = str(uuid.uuid4())
    rig.service.stage_pending(rig.arn, token)
    (tmp_path / "event.json").write_text(json.dumps(rig.event("createSecret", token)))

    # WHEN the event is invoked with --json
    code = main(["--json", "invoke", "-e", str(tmp_path / "event.json")])

    # THEN stdout is the step's result document
    out, err = output(capsys, leak_scan)
    assert code == 0, err
    document = json.loads(out)
    assert (document["step"], document["outcome"], document["succeeded"]) == (
        "createSecret", "done", True)
    assert document["secret_id"] == rig.arn
    assert document["duration_ms"] >= 0


def test_invoke_local_json(fake_db: FakeDatabase, capsys: pytest.CaptureFixture[str],
                           leak_scan: LeakScan) -> None:
    code = main(["invoke", "--local", "-e", EVENT, "--json"])
    out, err = output(capsys, leak_scan)
    document = json.loads(out)
    assert code == 0, err
    assert document["result"]["step"] == "setSecret"
    assert [s["step"] for s in document["prepared"]] == ["createSecret"]
    assert document["api_calls"] == {"DescribeSecret": 1}
    assert document["succeeded"] is True


def test_policy_json_is_the_policy(sm: Any, capsys: pytest.CaptureFixture[str],
                                   leak_scan: LeakScan) -> None:
    # GIVEN a secret / WHEN its policy is printed with and without --json
    sm.create_secret(Name="app/db", SecretString="{}")
    assert main(["policy", "app/db", "--for", "lambda"]) == 0
    plain, _ = output(capsys, leak_scan)
    assert main(["policy", "app/db", "--for", "lambda", "--json"]) == 0
    as_json, _ = output(capsys, leak_scan)

    # THEN the same JSON document
    assert json.loads(plain) == json.loads(as_json)
    assert json.loads(plain)["Version"] == "2012-10-17"


def test_consumers_that_could_not_all_be_checked_exit_3_with_the_report(
        sm: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        leak_scan: LeakScan) -> None:
    # GIVEN a consumers report where no consumer fails but some check could not run
    @dataclass
    class Partial:
        failed: bool = False
        incomplete: bool = True

        def to_dict(self) -> dict[str, Any]:
            return {"sources": {"ecs": "not checked: AccessDeniedException"}}

    monkeypatch.setattr(rotation.tools.consumers, "find_consumers",
                        lambda *args, **kwargs: Partial())

    # WHEN / THEN exit 3; the JSON error document carries the partial report
    assert main(["consumers", "app/db", "--json"]) == 3
    out, err = output(capsys, leak_scan)
    document = json.loads(out)
    assert document["exit_code"] == 3
    assert document["result"] == Partial().to_dict()
    assert "some consumer checks could not run" in err


# -- doctor --local and --remote -----------------------------------------------------------------

@pytest.fixture
def local_doctor(fake_db: FakeDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 leak_scan: LeakScan) -> Callable[..., tuple[int, str, str]]:
    """``rotation doctor --local`` on the in-memory database (a plug-in engine: no protocol
    probe), its port a listening socket: (exit code, stdout, stderr)."""
    sample = tmp_path / "secret-fake.json"
    sample.write_text(json.dumps({"engine": "fake", "host": "db.example.internal", "port": 1,
                                  "username": "app_user",
                                  "password": "EXAMPLE-not-a-real-password-0000"}))

    def run(*extra: str) -> tuple[int, str, str]:
        code = main(["doctor", "--local", "--secret", str(sample), *extra])
        return (code, *output(capsys, leak_scan))

    return run


def test_doctor_local_checks_a_secret_of_the_embedded_stack(
        local_doctor: Callable[..., tuple[int, str, str]]) -> None:
    # GIVEN / WHEN the doctor on the embedded stack, with an AWS option it does not need
    code, out, err = local_doctor("--region", "eu-west-1")

    # THEN every check that applies passes, on the local secret, and the option is noted
    assert code == 0, out + err
    assert "rotation doctor: rotation-demo-fake on the embedded stack" in out
    for name in ("secret-describe", "rotation-configured", "secret-format", "db-login",
                 "staging-labels"):
        assert f"ok    {name}" in out
    assert "0 fail" in out
    assert "note: --region not used: the embedded stack makes no AWS calls" in err


def test_doctor_local_json_names_the_local_secret(
        local_doctor: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = local_doctor("--json", "my-secret")
    document = json.loads(out)
    assert code == 0
    assert document["ok"] is True
    assert document["secret_id"].endswith(":secret:my-secret-" + document["secret_id"][-6:])
    assert {c["name"]: c["status"] for c in document["checks"]}["db-login"] == "ok"


@dataclass
class FakeRemote:
    """Stands in for rotation.tools.remote_doctor: records what the CLI passed."""

    report: DoctorReport
    raises: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def module(self) -> types.ModuleType:
        import rotation.tools.remote_doctor as real

        fake = types.ModuleType("rotation.tools.remote_doctor")
        fake.RemoteDoctorError = real.RemoteDoctorError  # type: ignore[attr-defined]
        fake.client_config = real.client_config  # type: ignore[attr-defined]
        fake.default_function_name = self.default_function_name  # type: ignore[attr-defined]
        fake.run_remote_doctor = self.run_remote_doctor  # type: ignore[attr-defined]
        return fake

    def default_function_name(self, secrets_client: Any, secret_id: str) -> str:
        self.calls.append({"default_for": secret_id})
        return "arn:aws:lambda:eu-west-2:123456789012:function:rotation"

    def run_remote_doctor(self, lambda_client: Any, function_name: str, secret_id: str, *,
                          timeout: float = 5.0) -> DoctorReport:
        self.calls.append({"client": lambda_client, "function": function_name,
                           "secret": secret_id, "timeout": timeout})
        if self.raises is not None:
            raise self.raises
        return self.report


def remote_report(status: Literal["ok", "fail"]) -> DoctorReport:
    return DoctorReport("app/db", checks=[
        CheckResult("db-network", "ok", "TCP connect in 2 ms (from the function)"),
        CheckResult("db-login", status, "AWSCURRENT logs in" if status == "ok" else
                    "the database refused the login", "" if status == "ok" else
                    "check the password")])


@pytest.mark.parametrize("status", ["ok", "fail"])
def test_doctor_remote_prints_the_functions_verdicts(status: Literal["ok", "fail"], sm: Any,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str],
                                                     leak_scan: LeakScan) -> None:
    # GIVEN the deployed function answers its verdicts
    remote = FakeRemote(remote_report(status))
    monkeypatch.setitem(sys.modules, "rotation.tools.remote_doctor", remote.module())

    # WHEN the doctor runs remotely, the function found from the secret
    code = main(["doctor", "app/db", "--remote", "--region", "eu-west-2", "--timeout", "2"])

    # THEN the function was asked through a Lambda client of the session (with the remote
    # doctor's long read timeout), and its verdicts are printed like the local doctor's
    out, _ = output(capsys, leak_scan)
    assert code == (0 if status == "ok" else 1)
    call = remote.calls[1]
    assert remote.calls[0] == {"default_for": "app/db"}
    assert (call["function"], call["secret"], call["timeout"]) == (
        "arn:aws:lambda:eu-west-2:123456789012:function:rotation", "app/db", 2.0)
    assert call["client"].meta.region_name == "eu-west-2"
    assert call["client"].meta.config.read_timeout == 910
    assert "(--remote: inside arn:aws:lambda:eu-west-2:123456789012:function:rotation)" in out
    assert "ok    db-network" in out
    assert f"{'ok  ' if status == 'ok' else 'FAIL'}  db-login" in out
    assert ("summary: 2 ok, 0 warn, 0 fail" if status == "ok" else
            "summary: 1 ok, 0 warn, 1 fail") in out


def test_doctor_remote_with_a_function_name_and_json(sm: Any, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str],
                                                     leak_scan: LeakScan) -> None:
    remote = FakeRemote(remote_report("ok"))
    monkeypatch.setitem(sys.modules, "rotation.tools.remote_doctor", remote.module())

    code = main(["doctor", "app/db", "--remote", "--function-name", "my-rotation", "--json"])

    out, _ = output(capsys, leak_scan)
    assert code == 0
    assert [c["function"] for c in remote.calls] == ["my-rotation"]  # no lookup
    assert [c["name"] for c in json.loads(out)["checks"]] == ["db-network", "db-login"]


def test_doctor_remote_without_an_answer_could_not_run(sm: Any,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str],
                                                       leak_scan: LeakScan) -> None:
    # GIVEN the caller may not invoke the function
    from rotation.tools.remote_doctor import InvokeDeniedError

    remote = FakeRemote(remote_report("ok"), raises=InvokeDeniedError(
        "you may not invoke function my-rotation", hint="allow lambda:InvokeFunction"))
    monkeypatch.setitem(sys.modules, "rotation.tools.remote_doctor", remote.module())

    # WHEN / THEN exit 3 with the reason
    code = main(["doctor", "app/db", "--remote", "--function-name", "my-rotation"])
    _, err = output(capsys, leak_scan)
    assert code == 3
    assert "error: you may not invoke function my-rotation" in err
    assert "fix: allow lambda:InvokeFunction" in err
