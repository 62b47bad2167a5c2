"""TLS settings shared by the adapters: the SSLContext for each sslmode, and the CA file that
verifies database servers when ``ROTATION_CA_BUNDLE`` is not set.

:func:`make_ssl_context` is for drivers that take a Python :class:`ssl.SSLContext` (PyMySQL).
``verify-full`` checks the chain and the host name, ``verify-ca`` the chain but not the host
name, ``require`` encrypts without any check, ``disable`` (only when the secret opts out) sends
no TLS at all. There is never a fallback from TLS to plaintext. ``VERIFY_X509_STRICT`` (on by
default from Python 3.13) is cleared, as PyMySQL and OpenSSL-based clients do: the chain, the
signature and the host name are still verified, but server certificates made by MySQL's own
``mysql_ssl_rsa_setup`` (no key-usage extensions) are accepted.

:func:`default_ca_file` is for drivers that bundle their own OpenSSL (psycopg-binary's libpq),
which do not find the machine's trust store by themselves: libpq's ``sslrootcert=system`` looks
in the bundled OpenSSL's own directory, which trusts nothing on most machines, and libpq refuses
``verify-ca`` with it. So the adapters pass the trust store explicitly, as one PEM file, found
the way Python's :mod:`ssl` finds it (on Lambda that is the runtime's bundle). Shared by every
adapter that needs a CA *file*.

:func:`libpq_security_params` is the TLS and authentication part of every libpq login, shared by
the PostgreSQL adapter and the applications' client (:mod:`rotation.client`), so that both log
in exactly alike.
"""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

from rotation.errors import TlsError

if TYPE_CHECKING:
    from rotation.credentials import SslMode

__all__ = ["default_ca_file", "libpq_security_params", "make_ssl_context"]


def default_ca_file() -> str:
    """The machine's trust store as a PEM file: ``$SSL_CERT_FILE`` when set, else the default
    CA file of the OpenSSL that Python's :mod:`ssl` uses.

    Raises :class:`~rotation.errors.TlsError`, naming every place tried, when there is no such
    file: the caller must then fail, never connect without verifying.
    """
    paths = ssl.get_default_verify_paths()
    # cafile is $SSL_CERT_FILE (when set, even if missing: OpenSSL would not look further either)
    # or OpenSSL's default, and None unless that is an existing file.
    if paths.cafile:
        return paths.cafile
    env_value = os.environ.get(paths.openssl_cafile_env)
    if env_value is not None:
        tried = f"${paths.openssl_cafile_env}={env_value!r} (not a file)"
    else:
        tried = (f"${paths.openssl_cafile_env} (not set), OpenSSL's default CA file "
                 f"{paths.openssl_cafile!r} (not a file)")
    if paths.capath:
        tried += f"; the CA directory {paths.capath!r} exists, but database drivers need a file"
    raise TlsError(
        f"no CA file to verify the database's certificate: tried {tried}",
        hint="set ROTATION_CA_BUNDLE to the PEM of the CA that signed the server certificate "
             "(for RDS, the region's global bundle); certificate checks are never skipped")


def make_ssl_context(sslmode: SslMode, ca_bundle: str | None) -> ssl.SSLContext | None:
    """The SSLContext for ``sslmode`` (None for ``disable``). Raises TlsError when the CA
    bundle cannot be read."""
    if sslmode == "disable":
        return None
    if sslmode == "require":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # encrypted, nothing verified
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context = ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        error = TlsError(f"cannot load the CA bundle {ca_bundle!r}: {reason}",
                         hint="set ROTATION_CA_BUNDLE to a readable PEM file")
    else:
        context.check_hostname = sslmode == "verify-full"
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT
        return context
    raise error


def libpq_security_params(sslmode: SslMode, ca_bundle: str | None) -> dict[str, str]:
    """The libpq parameters that guard a login: TLS per ``sslmode`` with the CA file
    (``ca_bundle``, else :func:`default_ca_file` for the verifying modes), and no way around it.
    Raises TlsError when a verifying sslmode has no CA file to verify with."""
    params = {
        "sslmode": sslmode,
        # libpq takes defaults from PG* environment variables: pin what guards TLS and the
        # password. GSSAPI encryption, when Kerberos credentials are around, would be used
        # instead of TLS and its certificate check.
        "gssencmode": "disable",
        "ssl_min_protocol_version": "TLSv1.2",
        # Only methods that check the password without sending it: no cleartext request (an
        # unverified `require` peer would read it), no `trust` (a login would prove nothing).
        "require_auth": "scram-sha-256,md5",
    }
    if sslmode in ("verify-full", "verify-ca"):
        params["sslrootcert"] = ca_bundle or default_ca_file()
    return params


class SslContexts:
    """The SSLContext of each sslmode for one CA bundle, built on first use and kept: loading a
    bundle of a few hundred certificates takes tens of milliseconds. Shared by the adapters
    that take an SSLContext (MySQL, Redis) and the application client."""

    def __init__(self, ca_bundle: str | None) -> None:
        self.ca_bundle = ca_bundle
        self._by_mode: dict[str, ssl.SSLContext | None] = {}

    def get(self, sslmode: SslMode) -> ssl.SSLContext | None:
        """The context for ``sslmode``; None for ``disable``."""
        if sslmode not in self._by_mode:
            self._by_mode[sslmode] = make_ssl_context(sslmode, self.ca_bundle)
        return self._by_mode[sslmode]

