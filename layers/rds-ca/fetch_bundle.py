#!/usr/bin/env python3
"""Write the RDS CA layer's PEM: AWS's RDS global CA bundle plus Mozilla's roots (certifi).

Usage: fetch_bundle.py --pin FILE --certifi-requirements FILE [--certifi-wheel WHL]
                       [--url URL] [--file PEM] [--sha256 HEX] OUTPUT

ROTATION_CA_BUNDLE replaces the trust store (the adapters verify against that file only), so the
file holds every root a database on AWS may chain to, in this order, under a header that says
which bundle and which certifi release it holds:

1. AWS's RDS global bundle (RDS and Aurora endpoints; in no public trust store). It comes from
   ``--file`` (a local copy: air-gapped builds, tests) when given, else from ``--url`` (default:
   AWS's global bundle). Either way its SHA-256 must equal ``--sha256`` when given, else the hash
   pinned in ``--pin`` (``<hex>  global-bundle.pem``, as ``sha256sum`` writes it).
2. Mozilla's root store, ``certifi/cacert.pem`` from the certifi release pinned (version and
   wheel hash) in ``--certifi-requirements``: RDS Proxy endpoints (ACM certificates, Amazon's
   public roots) and publicly trusted servers. pip installs it in --require-hashes mode, wheel
   only, into a scratch directory: from the package index pip is configured with, or from
   ``--certifi-wheel`` alone (``--no-index``; the hash is still checked).

On a hash mismatch, a failed download or pip install, or bytes that are not PEM certificates,
nothing is written and the exit status is 1, with a message naming the fix. The same inputs
always give the same bytes. Standard library (and pip) only, like build_zip.py.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
MAX_BYTES = 4_000_000  # the bundle is ~170 kB; anything far bigger is not it
TIMEOUT_SECONDS = 30
PIP_TIMEOUT_SECONDS = 600
HEX64 = re.compile(r"[0-9a-f]{64}")
PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----")
CERTIFI_PIN = re.compile(r"^certifi==(\S+?)(?:\s|;|$)", re.M)


class BundleError(Exception):
    """Why the bundle was refused, with what to do about it."""


def pinned_sha256(pin: Path) -> str:
    """The first hash in ``pin`` (sha256sum format)."""
    try:
        text = pin.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read the pinned SHA-256 from {pin}: {exc}") from exc
    for line in text.splitlines():
        words = line.split()
        if words and HEX64.fullmatch(words[0].lower()):
            return words[0].lower()
    raise BundleError(
        f"{pin} holds no SHA-256: write one line '<64 hex digits>  global-bundle.pem'")


def read_source(url: str, file: str) -> tuple[bytes, str]:
    """The candidate bytes and where they came from."""
    if file:
        try:
            return Path(file).read_bytes(), file
        except OSError as exc:
            raise BundleError(f"cannot read the local bundle {file}: {exc}") from exc
    if not url.startswith(("https://", "http://")):
        raise BundleError(f"the bundle URL must be http(s), not {url!r}")
    try:
        # Scheme checked above; integrity comes from the pinned hash, not from the transport.
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            data: bytes = response.read(MAX_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BundleError(
            f"cannot download {url} ({reason}). This build needs that one download, or a "
            "copy fetched where there is network: build with "
            "RDS_CA_BUNDLE_FILE=/path/to/global-bundle.pem (its SHA-256 is still checked "
            "against the pin)") from exc
    if len(data) > MAX_BYTES:
        raise BundleError(f"{url} sent more than {MAX_BYTES} bytes: not the RDS CA bundle")
    return data, url


def certificate_count(data: bytes, source: str) -> int:
    """How many CA certificates OpenSSL loads from ``data`` (at least one, or an error)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # starts with an empty trust store
    try:
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (ValueError, ssl.SSLError) as exc:  # UnicodeDecodeError is a ValueError; so is "empty"
        raise BundleError(f"{source} is not a PEM CA bundle: {exc}") from exc
    count = context.cert_store_stats()["x509_ca"]
    if count == 0:
        raise BundleError(f"{source} holds no CA certificate")
    return int(count)


def rds_bundle(*, url: str, file: str, expected: str, pin: Path) -> tuple[bytes, str, str]:
    """The hash-checked RDS bundle, its SHA-256 and where the expected hash came from."""
    if expected:
        expected, where = expected.lower(), "RDS_CA_BUNDLE_SHA256"
        if not HEX64.fullmatch(expected):
            raise BundleError(f"RDS_CA_BUNDLE_SHA256 must be 64 hex digits, not {expected!r}")
    else:
        expected, where = pinned_sha256(pin), f"pinned in {pin}"
    data, source = read_source(url or DEFAULT_URL, file)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise BundleError(
            f"SHA-256 mismatch for {source}: expected {expected} ({where}), got {actual}; "
            "nothing was written. If AWS published a new bundle (it adds CAs for new regions), "
            f"review it and pin the new hash in {pin}; otherwise pass the right file")
    return data, actual, "pinned" if where.startswith("pinned") else f"given with {where}"


def certifi_version(requirements: Path) -> str:
    """The certifi version pinned in ``requirements`` (pip checks the hash itself)."""
    try:
        text = requirements.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read the certifi pin from {requirements}: {exc}") from exc
    found = CERTIFI_PIN.findall(text)
    if len(found) != 1:
        raise BundleError(
            f"{requirements} must pin certifi once: 'certifi==<version> "
            "--hash=sha256:<hash of the wheel>'")
    return str(found[0])


def pip_errors(output: str) -> str:
    """pip's ERROR lines (or its last line), and its last network warning, on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    network = [line.removeprefix("WARNING: ") for line in lines
               if line.startswith("WARNING:") and ("connection" in line or "fetch URL" in line)]
    return " ".join(errors or lines[-1:] or ["no output"]) + (
        f"; last network error: {network[-1]}" if network else "")


def install_certifi(requirements: Path, wheel: str, scratch: Path) -> tuple[bytes, str]:
    """certifi's cacert.pem and version, installed by pip with --require-hashes."""
    version = certifi_version(requirements)
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
            "--no-deps", "--only-binary=:all:", "--no-compile", "--require-hashes",
            "--target", str(scratch), "-r", str(requirements)]
    if wheel:
        if not Path(wheel).is_file():
            raise BundleError(f"cannot read the local certifi wheel {wheel}: no such file")
        argv += ["--no-index", "--find-links", wheel]
    env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore"}
    try:
        # This interpreter's pip, fixed options, the build's own paths; no shell.
        result = subprocess.run(argv, env=env, capture_output=True, text=True,  # noqa: S603
                                check=False, timeout=PIP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as exc:
        raise BundleError(f"pip did not install certifi=={version} within "
                          f"{PIP_TIMEOUT_SECONDS} s") from exc
    output = result.stdout + "\n" + result.stderr
    if result.returncode != 0:
        expected = re.findall(r"Expected sha256 ([0-9a-f]{64})", output) + re.findall(
            r"^\s+or ([0-9a-f]{64})", output, re.M)
        got = re.findall(r"Got\s+([0-9a-f]{64})", output)
        if "DO NOT MATCH THE HASHES" in output and got:
            raise BundleError(
                f"SHA-256 mismatch for certifi=={version}"
                f"{f' ({wheel})' if wheel else ''}: expected {' or '.join(expected)} (pinned in "
                f"{requirements}), got {got[0]}; nothing was written. To move to another "
                "certifi release, pin its version and wheel hash there (`pip download "
                "certifi==<version> --no-deps --only-binary=:all:`, then `pip hash`)")
        source = f"from the local wheel {wheel}" if wheel else "from the package index"
        raise BundleError(
            f"pip could not install certifi=={version} {source} ({pip_errors(output)}). "
            "Without network to the index, download the wheel where there is network (`pip "
            f"download certifi=={version} --no-deps --only-binary=:all:`) and build with "
            f"RDS_CA_CERTIFI_WHEEL=/path/to/certifi-{version}-py3-none-any.whl (its SHA-256 "
            f"is still checked against {requirements})")
    metadata = sorted(scratch.glob("certifi-*.dist-info/METADATA"))
    installed = re.search(r"^Version: (\S+)$",
                          metadata[0].read_text(encoding="utf-8"), re.M) if metadata else None
    if installed is None or installed.group(1) != version:
        raise BundleError(f"pip installed no certifi {version} into {scratch}")
    try:
        return (scratch / "certifi" / "cacert.pem").read_bytes(), version
    except OSError as exc:
        raise BundleError(f"certifi {version} has no cacert.pem: {exc}") from exc


def build(*, url: str, file: str, expected: str, pin: Path, requirements: Path, wheel: str,
          output: Path) -> str:
    """Write the combined, verified bundle to ``output``; return a one-line summary."""
    rds, rds_sha256, rds_where = rds_bundle(url=url, file=file, expected=expected, pin=pin)
    rds_count = certificate_count(rds, file or url or DEFAULT_URL)
    with tempfile.TemporaryDirectory(prefix="rds-ca-certifi-") as scratch:
        cacert, version = install_certifi(requirements, wheel, Path(scratch) / "target")
    # cacert.pem's comments name each root, in UTF-8; OpenSSL reads the certificates only.
    roots = b"\n".join(PEM_CERTIFICATE.findall(cacert))
    public_count = certificate_count(roots, f"certifi {version} cacert.pem") if roots else 0
    if not public_count:
        raise BundleError(f"certifi {version} cacert.pem holds no CA certificate")
    header = (
        "# ROTATION_CA_BUNDLE of the rotation function's RDS CA layer (layers/rds-ca). Database\n"
        "# TLS verifies against this file only, so it holds, in this order:\n"
        "# 1. AWS's RDS global CA bundle, for RDS and Aurora endpoints\n"
        f"#    ({DEFAULT_URL}):\n"
        f"#    {rds_count} CA certificates, sha256 ({rds_where})\n"
        f"#    {rds_sha256}\n"
        f"# 2. Mozilla's root store from certifi {version}, for RDS Proxy endpoints (ACM\n"
        "#    certificates, Amazon's public roots) and publicly trusted servers:\n"
        f"#    {public_count} CA certificates, certifi/cacert.pem sha256\n"
        f"#    {hashlib.sha256(cacert).hexdigest()}\n"
    )
    data = b"".join([
        header.encode("ascii"),
        b"\n# --- 1. AWS's RDS CA bundle ---\n", rds if rds.endswith(b"\n") else rds + b"\n",
        f"\n# --- 2. certifi {version} cacert.pem (Mozilla's roots) ---\n".encode("ascii"),
        cacert if cacert.endswith(b"\n") else cacert + b"\n",
    ])
    total = certificate_count(b"\n".join(PEM_CERTIFICATE.findall(data)), str(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_bytes(data)
    partial.chmod(0o644)
    partial.replace(output)
    return (f"{output}: {total} CA certificates, {len(data)} bytes: RDS bundle sha256 "
            f"{rds_sha256} ({rds_count} CA certificates, from {file or url or DEFAULT_URL}) "
            f"+ certifi {version} ({public_count} CA certificates"
            f"{f', from {wheel}' if wheel else ''})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", type=Path, required=True, help="file holding the pinned SHA-256")
    parser.add_argument("--url", default="", help=f"download URL (default {DEFAULT_URL})")
    parser.add_argument("--file", default="", help="local copy to use instead of downloading")
    parser.add_argument("--sha256", default="", help="expected SHA-256, replacing the pin")
    parser.add_argument("--certifi-requirements", type=Path, required=True,
                        help="requirements file pinning certifi (version and wheel hash)")
    parser.add_argument("--certifi-wheel", default="",
                        help="local certifi wheel to install instead of the index's")
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    try:
        print(build(url=args.url, file=args.file, expected=args.sha256, pin=args.pin,
                    requirements=args.certifi_requirements, wheel=args.certifi_wheel,
                    output=args.output))
    except BundleError as exc:
        print(f"rds-ca: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
