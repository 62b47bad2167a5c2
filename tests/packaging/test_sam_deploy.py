"""`sam build && sam deploy --guided` from a clean checkout, and the Serverless Application
Repository (SAR) metadata, checked offline with the real SAM CLI (`make setup` installs it in
.venv-sam).

* `sam build` follows the template's Architecture and Runtime parameters for the layers too,
  whether they come from --parameter-overrides or from a samconfig.toml: every makefile-built
  resource runs layers/targets/<Architecture>-<Runtime>/Makefile (its ContextPath, resolved by
  SAM), which sets ARCH and PY. The built psycopg wheel is the requested one (.so names, WHEEL
  tags), the function artifact is what `make build-RotationFunction` builds (rotation/ and the
  locked packages), and make runs on the sources alone: in rotation/ and layers/*/ when building
  in source (samconfig.toml), else on a scratch copy of rotation/ or layers/<name>/ only, never
  the checkout's virtualenvs, dist/ or .git. A `make` shim first on PATH records where SAM runs
  make and what that folder holds.
* `sam validate --lint` accepts the template; `sam package` uploads every artifact, the licence
  and the readme to a stand-in S3 (moto's server) and the packaged template names them by
  s3:// URI; `sam publish` sends SAR's CreateApplication, with the template's metadata, to a
  local stub of the service (AWS_ENDPOINT_URL_SERVERLESSAPPLICATIONREPOSITORY), which checks the
  request against the service model's constraints. A real publish and a real deploy are not
  tried: both need an AWS account.
* samconfig.toml parses, for tomllib and for SAM's own reader, and gives the deploy a managed
  bucket (resolve_s3) and the IAM capability: with it `sam deploy` goes for the managed bucket
  (through CloudFormation, refused here) where without it it stops for want of a bucket.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
import trustme
from cfnlint.decode import decode_str  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

import rotation
from tests.conftest import ROOT
from tests.packaging.test_function_package import locked, runtime_files

SAM = ROOT / ".venv-sam" / "bin" / "sam"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
SAMCONFIG = ROOT / "samconfig.toml"
TARGETS = ROOT / "layers" / "targets"
BUCKET = "sam-artifacts"
REGION = "us-east-1"
# Resources whose Makefile must be the one for the parameters (compiled or target-tagged wheels)
TARGETED = ("RotationFunction", "RolloutFunction", "PostgresLayer", "MysqlLayer", "RedisLayer")
CONTEXT_PATH = {"Fn::Sub": "layers/targets/${Architecture}-${Runtime}"}
WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}

# The SAR's list of supported resource types
# (https://docs.aws.amazon.com/serverlessrepo/latest/devguide/list-supported-resources.html, as
# last published in awsdocs/aws-serverlessrepo-developer-guide): the types this template uses
# that it names, and those it does not name. A publish with SemanticVersion is refused on a type
# the service does not support; the page may have grown since, which only a real publish shows.
SAR_LISTED = {
    "AWS::Serverless::Function", "AWS::Serverless::LayerVersion", "AWS::IAM::Role",
    "AWS::Logs::LogGroup", "AWS::Lambda::Permission", "AWS::CloudWatch::Alarm",
    "AWS::Events::Rule", "AWS::Lambda::Function", "AWS::Lambda::LayerVersion",
}
SAR_NOT_LISTED = {"AWS::Logs::QueryDefinition", "AWS::SecretsManager::RotationSchedule"}


def template() -> dict[str, Any]:
    data, matches = decode_str((ROOT / "template.yaml").read_text(encoding="utf-8"))
    assert not matches, matches
    return dict(data)


def sam(*args: str, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    assert SAM.is_file(), f"{SAM} is missing: run `make setup` (it installs the SAM CLI)"
    return subprocess.run([str(SAM), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def sam_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """SAM's environment: no telemetry, fake credentials and no AWS profile files (nothing can
    reach an account), the RDS CA layer from a local CA (no download; certifi comes through pip
    and its cache), and scratch folders under the test's own temporary folder."""
    work = tmp_path_factory.mktemp("sam-env")
    ca = work / "ca.pem"
    ca.write_bytes(trustme.CA().cert_pem.bytes())
    (work / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SAM_")) and k not in ("ARCH", "PY")}
    env.update({
        "SAM_CLI_TELEMETRY": "0", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(work / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-credentials"),
        "RDS_CA_BUNDLE_FILE": str(ca),
        "RDS_CA_BUNDLE_SHA256": hashlib.sha256(ca.read_bytes()).hexdigest(),
        "TMPDIR": str(work / "tmp"),
    })
    return env


# --- sam build -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MakeRun:
    """One make that SAM started: its folder, that folder's entries, its Makefile and target."""
    cwd: Path
    entries: frozenset[str]
    makefile: Path
    target: str


@dataclass(frozen=True)
class Build:
    architecture: str
    runtime: str
    in_source: bool
    artifacts: Path
    make_runs: tuple[MakeRun, ...]


# One file per make run (SAM builds in parallel): where SAM runs make, what that folder holds, and
# the arguments; then the real make.
MAKE_SHIM = """#!/bin/sh
{{ printf 'cwd\\t%s\\n' "$PWD"; ls -A | sed 's/^/entry\\t/'; printf 'args'
  for a in "$@"; do printf '\\t%s' "$a"; done; printf '\\n'; }} > "$MAKE_SHIM_LOG/run-$$"
exec {make} "$@"
"""


def read_make_log(log: Path) -> tuple[MakeRun, ...]:
    runs = []
    for record in sorted(log.iterdir()):
        cwd, entries, args = Path(), set(), []
        for line in record.read_text(encoding="utf-8").splitlines():
            kind, _, rest = line.partition("\t")
            if kind == "cwd":
                cwd = Path(rest)
            elif kind == "entry":
                entries.add(rest)
            elif kind == "args":
                args = rest.split("\t")
        if "--makefile" in args:  # SAM's runs (a recipe's own sub-make names its file with -f)
            makefile = Path(args[args.index("--makefile") + 1])
            runs.append(MakeRun(cwd, frozenset(entries), makefile, args[-1]))
    return tuple(runs)


# (architecture, runtime, how SAM gets them, build in source): the parameters once on the command
# line with the repository's samconfig.toml (which builds in source), once from a samconfig.toml
# of their own that builds on a scratch copy. Between them: both architectures, and a runtime
# other than the default, so a samconfig.toml that SAM did not read would show.
BUILDS = [("arm64", "python3.13", "command line", True),
          ("x86_64", "python3.13", "samconfig.toml", False)]


class Builds:
    """`sam build` runs, once each per test session worker, on first use."""

    def __init__(self, work: Path, sam_env: dict[str, str]) -> None:
        self.work = work
        self.sam_env = sam_env
        self.done: dict[tuple[str, str, str, bool], Build] = {}

    def get(self, spec: tuple[str, str, str, bool]) -> Build:
        if spec not in self.done:
            self.done[spec] = self._run(*spec)
        return self.done[spec]

    def _run(self, architecture: str, runtime: str, source: str, in_source: bool) -> Build:
        work = self.work / f"{architecture}-{runtime}"
        shim_dir = work / "bin"
        shim_dir.mkdir(parents=True)
        real_make = shutil.which("make")
        assert real_make is not None
        (shim_dir / "make").write_text(MAKE_SHIM.format(make=real_make), encoding="utf-8")
        (shim_dir / "make").chmod(0o755)
        (work / "make-runs").mkdir()
        env = {**self.sam_env, "PATH": f"{shim_dir}{os.pathsep}{self.sam_env['PATH']}",
               "MAKE_SHIM_LOG": str(work / "make-runs")}
        overrides = f"Architecture={architecture} Runtime={runtime}"
        if source == "command line":
            options = ["--parameter-overrides", overrides]
        else:
            config = work / "samconfig.toml"
            config.write_text("version = 0.1\n[default.global.parameters]\n"
                              f'parameter_overrides = "{overrides}"\n'
                              "[default.build.parameters]\nbuild_in_source = false\n",
                              encoding="utf-8")
            options = ["--config-file", str(config)]
        # GIVEN a plain `sam build` with the parameters from the command line or a samconfig.toml
        # WHEN it runs into a build folder of its own
        proc = sam("build", "--build-dir", str(work / "build"), *options, env=env)
        # THEN it succeeds
        assert proc.returncode == 0, explain(proc)
        return Build(architecture, runtime, in_source, work / "build",
                     read_make_log(work / "make-runs"))


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, sam_env: dict[str, str]) -> Builds:
    return Builds(tmp_path_factory.mktemp("sam-build"), sam_env)


@pytest.fixture(params=BUILDS, ids=lambda b: f"{b[0]}-{b[1]}-{b[2]}")
def build(request: pytest.FixtureRequest, builds: Builds) -> Build:
    return builds.get(request.param)


def test_sam_build_makes_the_postgres_layer_for_the_parameters(build: Build) -> None:
    # WHEN the built PostgreSQL layer's compiled modules and wheel tags are read
    layer = build.artifacts / "PostgresLayer" / "python"
    modules = sorted(p.name for p in (layer / "psycopg_binary").glob("*.so"))
    (wheel,) = layer.glob("psycopg_binary-*.dist-info/WHEEL")
    tags = re.findall(r"^Tag: (\S+)$", wheel.read_text(encoding="utf-8"), re.M)
    py = build.runtime.removeprefix("python").replace(".", "")
    arch = WHEEL_ARCH[build.architecture]
    # THEN every one is for the requested Python and architecture
    assert modules, "no compiled module in psycopg_binary"
    assert all(m.endswith(f".cpython-{py}-{arch}-linux-gnu.so") for m in modules), modules
    assert tags
    assert all(re.fullmatch(rf"cp{py}-cp{py}-manylinux\w*_{arch}", t) for t in tags), tags
    # AND the pure-Python drivers are there too
    assert (build.artifacts / "MysqlLayer" / "python" / "pymysql").is_dir()
    assert (build.artifacts / "RedisLayer" / "python" / "redis").is_dir()
    # AND each driver layer's marker (/opt/rotation-layers/<layer>.json) names the same pair
    for resource, layer in (("PostgresLayer", "postgres"), ("MysqlLayer", "mysql"),
                            ("RedisLayer", "redis")):
        marker = build.artifacts / resource / "rotation-layers" / f"{layer}.json"
        assert json.loads(marker.read_text(encoding="utf-8")) == {
            "architecture": build.architecture, "layer": layer,
            "python": build.runtime.removeprefix("python")}, resource


def test_every_targeted_resource_runs_the_makefile_of_the_parameters(build: Build) -> None:
    # WHEN the make runs SAM started are listed by target
    by_target = {run.target: run.makefile.resolve() for run in build.make_runs}
    expected = (TARGETS / f"{build.architecture}-{build.runtime}" / "Makefile").resolve()
    # THEN each resource built for an architecture and runtime ran that pair's Makefile
    assert {f"build-{name}" for name in TARGETED} <= set(by_target)
    assert {target: by_target[target] for target in (f"build-{n}" for n in TARGETED)} == {
        f"build-{name}": expected for name in TARGETED}


def test_sam_build_runs_make_on_the_sources_alone(build: Build) -> None:
    # GIVEN each resource's source folder (CodeUri / ContentUri)
    resources = template()["Resources"]
    sources = {f"build-{name}": ROOT / (res["Properties"].get("CodeUri")
                                        or res["Properties"]["ContentUri"])
               for name, res in resources.items()
               if res.get("Metadata", {}).get("BuildMethod") == "makefile"}
    assert build.make_runs
    for run in build.make_runs:
        source = sources[run.target]
        # THEN no source is the checkout's root, and make never sees a virtualenv, dist/ or .git
        assert source.resolve() != ROOT.resolve(), run.target
        assert not {e for e in run.entries if e.startswith((".venv", "dist", ".git"))}, run
        if build.in_source:
            # AND in source, make runs in the source folder itself: nothing was copied
            assert run.cwd.resolve() == source.resolve(), run
        else:
            # AND otherwise in a scratch copy of the source folder, and of nothing more
            assert ROOT.resolve() not in run.cwd.resolve().parents, run
            assert run.entries <= set(os.listdir(source)), run


def test_sam_builds_the_function_package_that_make_builds(
        build: Build, tmp_path: Path) -> None:
    # GIVEN the top-level Makefile's own recipe for the same pair, without SAM
    reference = tmp_path / "function"
    proc = subprocess.run(
        ["make", "--no-print-directory", "build-RotationFunction", f"ARTIFACTS_DIR={reference}",
         f"ARCH={build.architecture}", f"PY={build.runtime.removeprefix('python')}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, explain(proc)

    def files(folder: Path) -> set[str]:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}

    built = files(build.artifacts / "RotationFunction")
    # THEN SAM's function artifact holds exactly the same files
    assert built == files(reference)
    # AND that is rotation/ as the runtime needs it and the locked packages
    assert {n for n in built if n.startswith("rotation/")} == runtime_files()
    dist_infos = {m[1].lower().replace("_", "-")
                  for n in built if (m := re.match(r"([^/]+)-[^-/]+\.dist-info/RECORD$", n))}
    assert dist_infos == set(locked("1"))
    # AND the roll-out function is the same package
    assert files(build.artifacts / "RolloutFunction") == built


# --- the Makefiles per Architecture and Runtime --------------------------------------------------


def test_a_makefile_for_every_allowed_architecture_and_runtime() -> None:
    # GIVEN the template's allowed pairs and layers/targets
    parameters = template()["Parameters"]
    pairs = set(product(parameters["Architecture"]["AllowedValues"],
                        parameters["Runtime"]["AllowedValues"]))
    folders = {p.name for p in TARGETS.iterdir() if p.is_dir()}
    # THEN there is one folder per pair, and its Makefile sets that pair for make
    assert folders == {f"{arch}-{runtime}" for arch, runtime in pairs}
    for arch, runtime in pairs:
        text = (TARGETS / f"{arch}-{runtime}" / "Makefile").read_text(encoding="utf-8")
        assert re.search(rf"^ARCH := {arch}$", text, re.M), arch
        assert re.search(rf"^PY := {runtime.removeprefix('python')}$", text, re.M), runtime
        assert re.search(r"^export ARCH PY$", text, re.M)


def test_targeted_resources_point_sam_at_those_makefiles() -> None:
    # GIVEN the resources built for an architecture and runtime
    resources = template()["Resources"]
    for name in TARGETED:
        metadata = resources[name]["Metadata"]
        # THEN SAM runs the Makefile of the parameters (resolved as for Architectures/Runtime)
        assert metadata["BuildMethod"] == "makefile", name
        assert metadata["ContextPath"] == CONTEXT_PATH, name
        if resources[name]["Type"] == "AWS::Serverless::LayerVersion":
            # AND records the architecture it builds (else SAM assumes x86_64 and warns)
            assert metadata["BuildArchitecture"] == {"Ref": "Architecture"}, name


# --- sam validate, package, publish --------------------------------------------------------------


def test_sam_validate_lint_accepts_the_template(sam_env: dict[str, str]) -> None:
    # WHEN `sam validate --lint` runs (cfn-lint inside SAM, offline)
    proc = sam("validate", "--lint", env=sam_env, timeout=300)
    # THEN the template is valid
    assert proc.returncode == 0, explain(proc)
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's server on a free loopback port: the S3 that `sam package` uploads to."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@dataclass(frozen=True)
class Packaged:
    template: dict[str, Any]
    path: Path
    objects: dict[str, bytes]


@pytest.fixture(scope="module")
def packaged(builds: Builds, s3_endpoint: str, sam_env: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    # GIVEN a built template (arm64, python3.13)
    build = builds.get(BUILDS[0])
    # WHEN `sam package` uploads its artifacts to the stand-in S3
    output = tmp_path_factory.mktemp("packaged") / "packaged.yaml"
    proc = sam("package", "--template-file", str(build.artifacts / "template.yaml"),
               "--s3-bucket", BUCKET, "--output-template-file", str(output),
               env={**sam_env, "AWS_ENDPOINT_URL_S3": s3_endpoint})
    assert proc.returncode == 0, explain(proc)
    data, matches = decode_str(output.read_text(encoding="utf-8"))
    assert not matches, matches
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    objects = {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in keys}
    return Packaged(dict(data), output, objects)


def s3_key(uri: Any) -> str:
    assert isinstance(uri, str), uri
    match = re.fullmatch(rf"s3://{BUCKET}/(\S+)", uri)
    assert match, uri
    return match[1]


def test_sam_package_uploads_every_artifact_and_the_sar_documents(packaged: Packaged) -> None:
    resources = packaged.template["Resources"]
    # THEN every function's code and every layer's content is an object in the bucket
    uris = {name: res["Properties"].get("CodeUri") or res["Properties"].get("ContentUri")
            for name, res in resources.items()
            if res["Type"] in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion")}
    assert set(uris) >= {*TARGETED, "RdsCaLayer"}
    assert all(s3_key(uri) in packaged.objects for uri in uris.values()), uris
    # AND the SAR licence and readme are uploaded byte for byte
    app = packaged.template["Metadata"]["AWS::ServerlessRepo::Application"]
    assert packaged.objects[s3_key(app["LicenseUrl"])] == (ROOT / "LICENSE").read_bytes()
    assert packaged.objects[s3_key(app["ReadmeUrl"])] == (ROOT / "README.md").read_bytes()


class SarStub(http.server.BaseHTTPRequestHandler):
    """CreateApplication (POST /applications) as the service model describes it: records the
    request and answers 201 with the model's response fields."""
    requests: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append((self.path, body))
        answer = json.dumps({
            "applicationId": f"arn:aws:serverlessrepo:{REGION}:123456789012:applications/"
                             f"{body.get('name')}",
            "name": body.get("name"), "author": body.get("author"),
            "description": body.get("description"),
        }).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the test reads requests
        pass


@pytest.fixture
def sar_endpoint() -> Iterator[str]:
    SarStub.requests.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SarStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()
    server.server_close()


def test_sam_publish_sends_the_application_metadata(
        packaged: Packaged, sar_endpoint: str, sam_env: dict[str, str]) -> None:
    # WHEN `sam publish` sends the packaged template to the stub of the SAR
    proc = sam("publish", "--template", str(packaged.path), env={
        **sam_env, "AWS_ENDPOINT_URL_SERVERLESSAPPLICATIONREPOSITORY": sar_endpoint}, timeout=300)
    # THEN it publishes with one CreateApplication
    assert proc.returncode == 0, explain(proc)
    assert "Publish Succeeded" in proc.stdout
    assert [path for path, _ in SarStub.requests] == ["/applications"]
    body = SarStub.requests[0][1]
    # AND the request meets the service model's constraints (botocore's serverlessrepo model)
    assert re.fullmatch(r"[a-zA-Z0-9-]{1,140}", body["name"])
    assert re.fullmatch(r"[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?", body["author"])
    assert len(body["author"]) <= 127
    assert 1 <= len(body["description"]) <= 256
    assert 1 <= len(body["labels"]) <= 10
    assert all(re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", label) for label in body["labels"])
    # AND it carries the project's licence and version, and S3 URIs for licence and readme
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert body["spdxLicenseId"] == pyproject["project"]["license"]
    assert body["semanticVersion"] == rotation.__version__
    assert s3_key(body["licenseUrl"]) in packaged.objects
    assert s3_key(body["readmeUrl"]) in packaged.objects
    # AND the template it sends is the packaged one, without the SAR metadata itself
    sent, matches = decode_str(body["templateBody"])
    assert not matches, matches
    assert "AWS::ServerlessRepo::Application" not in sent.get("Metadata", {})
    assert sent["Resources"]["RotationFunction"]["Properties"]["CodeUri"] == \
        packaged.template["Resources"]["RotationFunction"]["Properties"]["CodeUri"]


def test_sar_metadata_is_the_projects() -> None:
    # GIVEN the template's SAR metadata, pyproject.toml and the package
    app = template()["Metadata"]["AWS::ServerlessRepo::Application"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # THEN version and licence are the project's, and the files it names exist
    assert app["SemanticVersion"] == rotation.__version__
    assert app["SpdxLicenseId"] == pyproject["project"]["license"] == "Apache-2.0"
    licence = (ROOT / app["LicenseUrl"]).read_text(encoding="utf-8")
    assert re.match(r"\s*Apache License\s+Version 2\.0, January 2004", licence)
    assert "END OF TERMS AND CONDITIONS" in licence
    assert (ROOT / app["ReadmeUrl"]).is_file()
    assert {"Name", "Description", "Author"} <= set(app)


def test_resource_types_against_the_sar_list() -> None:
    # GIVEN the resource types the template declares
    used = {res["Type"] for res in template()["Resources"].values()}
    # THEN those the SAR's published list does not name are exactly the known ones (a new type
    # must be checked against the list; one that the list gains leaves this set)
    assert used - SAR_LISTED == SAR_NOT_LISTED


# --- the SAM CLI's installation ------------------------------------------------------------------


def sam_pin() -> str:
    pin = re.search(r"^SAM_CLI_VERSION := (\S+)$",
                    (ROOT / "Makefile").read_text(encoding="utf-8"), re.M)
    assert pin, "Makefile pins no SAM_CLI_VERSION"
    return pin[1]


@pytest.mark.parametrize(("target", "installs"), [("test", True), ("demo", False)])
def test_make_test_installs_the_pinned_sam_cli_and_make_demo_does_not(
        target: str, installs: bool, tmp_path: Path) -> None:
    # GIVEN no virtualenvs yet / WHEN the entry point's commands are listed
    commands = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={tmp_path / 'venv'}",
         f"SAM_VENV={tmp_path / 'sam'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    # THEN `make test` installs the pinned SAM CLI in a virtualenv of its own, `make demo` not
    assert (f"{tmp_path / 'sam'}/bin/python -m pip install --quiet aws-sam-cli=={sam_pin()}"
            in commands) is installs
    assert ("aws-sam-cli" in commands) is installs


def test_the_installed_sam_cli_is_the_pinned_one(sam_env: dict[str, str]) -> None:
    # WHEN the SAM CLI that these tests run reports its version / THEN it is the Makefile's pin
    proc = sam("--version", env=sam_env, timeout=120)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.strip() == f"SAM CLI, version {sam_pin()}"


# --- samconfig.toml ------------------------------------------------------------------------------


def test_samconfig_deploys_with_a_managed_bucket_and_no_fixed_region() -> None:
    # GIVEN samconfig.toml / WHEN tomllib reads it
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    deploy = config["default"]["deploy"]["parameters"]
    build = config["default"]["build"]["parameters"]
    # THEN it is SAM's format, the deploy needs no bucket of yours and acknowledges the roles
    assert config["version"] == 0.1
    assert deploy["resolve_s3"] is True
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert deploy["confirm_changeset"] is True
    assert deploy["fail_on_empty_changeset"] is False
    assert deploy["stack_name"]
    # AND builds in source, uncached; and no region anywhere
    assert build["build_in_source"] is True
    assert build["cached"] is False
    assert "region" not in json.dumps(config)


def test_sam_deploy_needs_no_bucket_of_yours(builds: Builds, sam_env: dict[str, str]) -> None:
    # GIVEN a built template, and AWS endpoints that refuse connections (no account is reached)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = {**sam_env, "AWS_ENDPOINT_URL": closed, "AWS_MAX_ATTEMPTS": "1"}
    deploy = ["deploy", "--template-file", str(builds.get(BUILDS[0]).artifacts / "template.yaml"),
              "--config-file", str(SAMCONFIG), "--no-confirm-changeset", "--parameter-overrides",
              "SecretArns=arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf"]
    # WHEN `sam deploy` runs with samconfig.toml, and once more with its resolve_s3 turned off
    with_config = sam(*deploy, env=env, timeout=300)
    without = sam(*deploy, "--no-resolve-s3", env=env, timeout=300)
    # THEN with it, the deploy goes for SAM's managed bucket (through CloudFormation, refused
    # here) instead of stopping for want of a bucket, which it does without it
    assert "S3 Bucket not specified" in without.stdout + without.stderr, explain(without)
    assert "S3 Bucket not specified" not in with_config.stdout + with_config.stderr
    assert f'Could not connect to the endpoint URL: "{closed}/"' in with_config.stderr, \
        explain(with_config)


def test_sam_reads_samconfig_as_we_do() -> None:
    # WHEN SAM's own reader loads the deploy and build settings (global ones merged in)
    script = ("import json, sys\nfrom samcli.lib.config.samconfig import SamConfig\n"
              "c = SamConfig(sys.argv[1])\n"
              "print(json.dumps({cmd: c.get_all([cmd], 'parameters') for cmd in "
              "('deploy', 'build', 'package')}))\n")
    proc = subprocess.run([str(SAM_PYTHON), "-c", script, str(ROOT)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, explain(proc)
    seen = json.loads(proc.stdout)
    # THEN SAM sees what the tests above checked
    assert seen["deploy"]["resolve_s3"] is True
    assert seen["deploy"]["capabilities"] == "CAPABILITY_IAM"
    assert seen["package"]["resolve_s3"] is True
    assert seen["build"]["build_in_source"] is True
    assert "region" not in seen["deploy"]
    # AND build and deploy share one Architecture/Runtime pair (the global section), the
    # template's defaults: the layers are built for the pair the function is deployed with
    parameters = template()["Parameters"]
    default_pair = (f"Architecture={parameters['Architecture']['Default']} "
                    f"Runtime={parameters['Runtime']['Default']}")
    assert seen["build"]["parameter_overrides"] == default_pair
    assert seen["deploy"]["parameter_overrides"] == default_pair
