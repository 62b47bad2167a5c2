"""`make package-rds-ca` (the RDS CA layer's build, which `make package` and `sam build` run too):
the layer holds one PEM where the template points ROTATION_CA_BUNDLE, made of the RDS bundle and
Mozilla's public roots from certifi (ROTATION_CA_BUNDLE replaces the trust store, so RDS Proxy
endpoints and publicly trusted servers need those roots), and the build refuses anything it
cannot verify: bytes whose SHA-256 is not the pinned (or explicitly given) one, a certifi wheel
whose hash is not the pinned one, a download that fails, a file that is no CA bundle.

No test here reaches the network: the RDS bundle comes from a trustme CA passed as
RDS_CA_BUNDLE_FILE, certifi from a wheel made of the certifi installed in this virtualenv (the
real Mozilla roots) passed as RDS_CA_CERTIFI_WHEEL, pinned by its own hash in a requirements
file passed as RDS_CA_CERTIFI_REQUIREMENTS; "offline" is a download from a port nothing listens
on. The real pin (layers/rds-ca/requirements.txt) is installed from the index by
tests/packaging/test_lambda_layout.py's `make package`."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import ssl
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.conftest import ROOT

LAYER_PATH = "rotation-ca/ca-bundle.pem"  # under /opt once Lambda unpacks the layer
TEMPLATE_PATH = "/opt/rotation-ca/ca-bundle.pem"
PIN_FILE = ROOT / "layers" / "rds-ca" / "global-bundle.sha256"
CERTIFI_PIN_FILE = ROOT / "layers" / "rds-ca" / "requirements.txt"
UNROUTABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused
CERTIFI = importlib.metadata.distribution("certifi")
CERTIFI_CACERT = Path(str(CERTIFI.locate_file("certifi/cacert.pem"))).read_bytes()
NOT_IN_A_WHEEL = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def certifi_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A py3-none-any wheel of the certifi installed here: its files, a fresh RECORD."""
    wheel = tmp_path_factory.mktemp("wheel") / f"certifi-{CERTIFI.version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(CERTIFI.files or [], key=str):
            if "__pycache__" in file.parts or file.name in NOT_IN_A_WHEEL \
                    or str(file).startswith(".."):
                continue
            data = Path(str(file.locate())).read_bytes()
            zf.writestr(str(file), data)
            record.append(f"{file},sha256={_record_hash(data)},{len(data)}")
        dist_info = f"certifi-{CERTIFI.version}.dist-info"
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def certifi_pin(directory: Path, sha256_hex: str) -> Path:
    path = directory / "certifi-requirements.txt"
    path.write_text(f"certifi=={CERTIFI.version} \\\n    --hash=sha256:{sha256_hex}\n",
                    encoding="ascii")
    return path


def build(dist: Path, env: dict[str, str] | None = None, /,
          **variables: str) -> subprocess.CompletedProcess[str]:
    """`make package-rds-ca` into ``dist`` with these make variables, in ``env`` (default: the
    caller's environment), without any RDS_CA_* from it."""
    clean = {k: v for k, v in (os.environ if env is None else env).items()
             if not k.startswith("RDS_CA_")}
    argv = ["make", "--no-print-directory", "package-rds-ca", f"DIST={dist}"]
    argv += [f"{name}={value}" for name, value in variables.items()]
    return subprocess.run(argv, cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture
def offline_certifi(certifi_wheel: Path, tmp_path: Path) -> dict[str, str]:
    """Make variables that take certifi from the local wheel, pinned by its own hash."""
    return {"RDS_CA_CERTIFI_WHEEL": str(certifi_wheel),
            "RDS_CA_CERTIFI_REQUIREMENTS": str(certifi_pin(tmp_path, sha256(certifi_wheel)))}


@pytest.fixture
def ca_pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(trustme.CA(organization_name="rds-ca layer test").cert_pem.bytes())
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def trusted_subjects(pem: Path) -> list[dict[str, str]]:
    """The subjects of the CA certificates OpenSSL loads from ``pem``, as Python's ssl sees them
    (the way the adapters load ROTATION_CA_BUNDLE)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pem))
    certificates: list[dict[str, Any]] = context.get_ca_certs()
    return [{key: value for rdn in cert["subject"] for key, value in rdn}
            for cert in certificates]


def test_layer_holds_the_rds_bundle_and_certifis_roots_at_the_documented_path(
        ca_pem: Path, tmp_path: Path, offline_certifi: dict[str, str]) -> None:
    # GIVEN a CA PEM on disk standing for the RDS bundle, its SHA-256 given in place of the pin,
    # and certifi's wheel pinned by its hash
    # WHEN the layer is built twice from them
    local = {"RDS_CA_BUNDLE_FILE": str(ca_pem), "RDS_CA_BUNDLE_SHA256": sha256(ca_pem),
             **offline_certifi}
    first = build(tmp_path / "one", **local)
    second = build(tmp_path / "two", **local)
    # THEN the zip holds one PEM, at the path the template sets as ROTATION_CA_BUNDLE (layers
    # unpack under /opt), and the build is reproducible
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    layer_zip = tmp_path / "one" / "layer-rds-ca.zip"
    with zipfile.ZipFile(layer_zip) as zf:
        assert zf.namelist() == [LAYER_PATH]
        pem = zf.read(LAYER_PATH)
        assert (zf.getinfo(LAYER_PATH).external_attr >> 16) & 0o777 == 0o644
    assert f"/opt/{LAYER_PATH}" == TEMPLATE_PATH
    assert TEMPLATE_PATH in (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert layer_zip.read_bytes() == (tmp_path / "two" / "layer-rds-ca.zip").read_bytes()
    # AND the PEM is a header saying what is inside, the RDS part, then certifi's cacert.pem
    header, _, body = pem.partition(b"\n\n")
    assert all(line.startswith(b"# ") for line in header.splitlines())
    assert sha256(ca_pem).encode() in header
    assert f"certifi {CERTIFI.version}".encode() in header
    rds_at, certifi_at = body.find(ca_pem.read_bytes()), body.find(CERTIFI_CACERT)
    assert 0 <= rds_at < certifi_at
    assert body.endswith(CERTIFI_CACERT)
    # AND OpenSSL loads the RDS CA and Mozilla's roots from it, among them the roots of RDS
    # Proxy's ACM certificates and of a common public CA
    subjects = trusted_subjects(tmp_path / "one" / "build" / "layer-rds-ca" / LAYER_PATH)
    names = {s.get("commonName") for s in subjects}
    organizations = {s.get("organizationName") for s in subjects}
    assert len(subjects) >= 100
    assert {"Amazon Root CA 1", "ISRG Root X1"} <= names
    assert "rds-ca layer test" in organizations
    summary = re.search(r": (\d+) CA certificates, \d+ bytes: RDS bundle sha256 (\w+) "
                        r"\((\d+) CA certificates, .*\) \+ certifi (\S+) \((\d+) CA certificates",
                        first.stdout)
    assert summary, first.stdout
    assert summary.groups() == (str(len(subjects)), sha256(ca_pem), "1", CERTIFI.version,
                                str(len(subjects) - 1))


@pytest.mark.parametrize("override", [False, True], ids=["pinned-hash", "given-hash"])
def test_hash_mismatch_is_refused_naming_both_hashes(
        ca_pem: Path, tmp_path: Path, override: bool, offline_certifi: dict[str, str]) -> None:
    # GIVEN a local bundle whose SHA-256 is not the expected one: the pin, or a given hash
    pinned = PIN_FILE.read_text(encoding="ascii").split()[0]
    expected = "0" * 64 if override else pinned
    variables = {"RDS_CA_BUNDLE_FILE": str(ca_pem), **offline_certifi}
    if override:
        variables["RDS_CA_BUNDLE_SHA256"] = expected
    # WHEN the layer is built
    result = build(tmp_path / "dist", **variables)
    # THEN the build fails, names the expected and the actual hash and where the expected one
    # came from, and leaves no layer behind
    assert result.returncode != 0
    assert f"expected {expected}" in result.stderr
    assert f"got {sha256(ca_pem)}" in result.stderr
    assert ("RDS_CA_BUNDLE_SHA256" if override else str(PIN_FILE)) in result.stderr
    assert not (tmp_path / "dist" / "layer-rds-ca.zip").exists()
    assert not (tmp_path / "dist" / "build" / "layer-rds-ca" / LAYER_PATH).exists()


def test_certifi_hash_mismatch_is_refused_naming_both_hashes(
        ca_pem: Path, tmp_path: Path, certifi_wheel: Path) -> None:
    # GIVEN a good RDS bundle, and a certifi pin whose hash is not the wheel's
    wrong = "0" * 64
    requirements = certifi_pin(tmp_path, wrong)
    # WHEN the layer is built
    result = build(tmp_path / "dist", RDS_CA_BUNDLE_FILE=str(ca_pem),
                   RDS_CA_BUNDLE_SHA256=sha256(ca_pem), RDS_CA_CERTIFI_WHEEL=str(certifi_wheel),
                   RDS_CA_CERTIFI_REQUIREMENTS=str(requirements))
    # THEN pip refuses the wheel (--require-hashes), and the build says so with both hashes and
    # the pin file, and leaves no layer behind
    assert result.returncode != 0
    assert f"rds-ca: SHA-256 mismatch for certifi=={CERTIFI.version}" in result.stderr
    assert f"expected {wrong}" in result.stderr
    assert f"got {sha256(certifi_wheel)}" in result.stderr
    assert str(requirements) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dist" / "layer-rds-ca.zip").exists()
    assert not (tmp_path / "dist" / "build" / "layer-rds-ca" / LAYER_PATH).exists()


def test_certifi_is_pinned_by_version_and_wheel_hash() -> None:
    # GIVEN the layer's certifi pin and the layer's build commands (dry run)
    text = CERTIFI_PIN_FILE.read_text(encoding="utf-8")
    requirements = " ".join(line for line in text.replace("\\\n", " ").splitlines()
                            if not line.lstrip().startswith("#"))
    dry_run = subprocess.run(["make", "-n", "--no-print-directory", "build-RdsCaLayer",
                              "ARTIFACTS_DIR=/tmp/rds-ca-dry-run"],
                             cwd=ROOT, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("RDS_CA_")},
                             capture_output=True, text=True, timeout=60, check=True).stdout
    # THEN it is one exact version and one sha256 of its wheel, and the build uses it by default
    assert re.fullmatch(r"\s*certifi==\d+\.\d+\.\d+(\.post\d+)?\s+--hash=sha256:[0-9a-f]{64}\s*",
                        requirements), requirements
    assert f'--certifi-requirements "{CERTIFI_PIN_FILE}"' in dry_run
    assert '--certifi-wheel ""' in dry_run


def test_offline_build_fails_with_the_way_out(tmp_path: Path) -> None:
    # GIVEN no local bundle and a download that cannot connect
    # WHEN the layer is built
    result = build(tmp_path / "dist", RDS_CA_BUNDLE_URL=UNROUTABLE)
    # THEN it fails saying what it could not download and how to build without network
    assert result.returncode != 0
    assert f"rds-ca: cannot download {UNROUTABLE}" in result.stderr
    assert "RDS_CA_BUNDLE_FILE=" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dist" / "layer-rds-ca.zip").exists()


def test_offline_certifi_fails_with_the_way_out(ca_pem: Path, tmp_path: Path) -> None:
    # GIVEN a local RDS bundle, no local certifi wheel, and a package index that cannot connect
    # (pip's own configuration ignored: no mirror, no find-links)
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    offline |= {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": UNROUTABLE, "PIP_RETRIES": "1",
                "PIP_TIMEOUT": "5"}
    # WHEN the layer is built
    result = build(tmp_path / "dist", offline, RDS_CA_BUNDLE_FILE=str(ca_pem),
                   RDS_CA_BUNDLE_SHA256=sha256(ca_pem))
    # THEN it fails saying pip could not get the pinned certifi and why, and how to build without
    # network
    pinned = re.search(r"^certifi==(\S+)", CERTIFI_PIN_FILE.read_text(encoding="utf-8"), re.M)
    assert pinned
    assert result.returncode != 0
    assert f"rds-ca: pip could not install certifi=={pinned.group(1)} from the package index" \
        in result.stderr
    assert "last network error:" in result.stderr
    assert f"RDS_CA_CERTIFI_WHEEL=/path/to/certifi-{pinned.group(1)}-py3-none-any.whl" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "dist" / "layer-rds-ca.zip").exists()
    assert not (tmp_path / "dist" / "build" / "layer-rds-ca" / LAYER_PATH).exists()


@pytest.mark.parametrize("content", [b"not a certificate\n", b""], ids=["text", "empty"])
def test_a_file_that_is_no_ca_bundle_is_refused_even_with_its_hash(
        tmp_path: Path, content: bytes, offline_certifi: dict[str, str]) -> None:
    # GIVEN a file that is not a PEM CA bundle, with its own hash given
    junk = tmp_path / "junk.pem"
    junk.write_bytes(content)
    # WHEN the layer is built from it
    result = build(tmp_path / "dist", RDS_CA_BUNDLE_FILE=str(junk),
                   RDS_CA_BUNDLE_SHA256=sha256(junk), **offline_certifi)
    # THEN the build refuses it: a matching hash alone does not make a trust store
    assert result.returncode != 0
    assert "rds-ca:" in result.stderr
    assert "CA" in result.stderr.split("rds-ca:", 1)[1]
    assert not (tmp_path / "dist" / "layer-rds-ca.zip").exists()


@pytest.mark.parametrize("missing", ["bundle", "wheel"])
def test_missing_local_file_is_named(ca_pem: Path, tmp_path: Path, missing: str) -> None:
    # GIVEN a local bundle or certifi wheel path that does not exist
    nowhere = tmp_path / "nowhere" / ("global-bundle.pem" if missing == "bundle" else
                                      f"certifi-{CERTIFI.version}-py3-none-any.whl")
    variables = ({"RDS_CA_BUNDLE_FILE": str(nowhere)} if missing == "bundle" else
                 {"RDS_CA_BUNDLE_FILE": str(ca_pem), "RDS_CA_BUNDLE_SHA256": sha256(ca_pem),
                  "RDS_CA_CERTIFI_WHEEL": str(nowhere)})
    # WHEN the layer is built / THEN the error names the file
    result = build(tmp_path / "dist", **variables)
    assert result.returncode != 0
    what = "bundle" if missing == "bundle" else "certifi wheel"
    assert f"cannot read the local {what} {nowhere}" in result.stderr
