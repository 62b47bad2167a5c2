"""The CA file that verifies database servers when ``ROTATION_CA_BUNDLE`` is not set.

Drivers that bundle their own OpenSSL (psycopg-binary's libpq) do not find the machine's trust
store by themselves: libpq's ``sslrootcert=system`` looks in the bundled OpenSSL's own directory,
which trusts nothing on most machines, and libpq refuses ``verify-ca`` with it. So the adapters
pass the trust store explicitly, as one PEM file, found the way Python's :mod:`ssl` finds it
(on Lambda that is the runtime's bundle). Shared by every adapter that needs a CA *file*.
"""

from __future__ import annotations

import os
import ssl

from rotation.errors import TlsError

__all__ = ["default_ca_file"]


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
