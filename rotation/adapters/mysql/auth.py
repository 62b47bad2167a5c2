"""Authentication plugins, and the password hashes computed client-side (pure).

For ``mysql_native_password`` (and MariaDB's ``ed25519``) the password is set from the stored
form computed here, so the plaintext never leaves the client; ``caching_sha2_password``,
``sha256_password`` and MariaDB's ``parsec`` store salted, server-specific formats, so their
plaintext goes to the server over the verified TLS connection (which statement each server gets:
the table in :mod:`rotation.adapters.mysql.server`). Any other plugin has no password to rotate.

``*HEX`` is ``*`` + upper-case hex of SHA1(SHA1(password)) (what ``PASSWORD()`` computes); the
ed25519 value is MariaDB's: base64 (no padding) of the Ed25519 public key whose secret scalar is
the clamped first half of SHA512(password). Passwords are encoded as UTF-8 everywhere (login and
hash), the same bytes the server hashes for ``PASSWORD()`` over a utf8mb4 connection.
"""

from __future__ import annotations

import base64
import hashlib

NATIVE = "mysql_native_password"
CACHING_SHA2 = "caching_sha2_password"
SHA256 = "sha256_password"
ED25519 = "ed25519"
PARSEC = "parsec"

#: plugins whose password is set from a hash computed here (the plaintext never leaves the client)
CLIENT_HASHED_PLUGINS: dict[str, frozenset[str]] = {
    "mysql": frozenset({NATIVE}),
    "mariadb": frozenset({NATIVE, ED25519}),
}
#: plugins whose salted, server-specific storage format makes a client-side hash impractical:
#: the plaintext is sent, over the (verified) TLS connection
PLAINTEXT_PLUGINS: dict[str, frozenset[str]] = {
    "mysql": frozenset({CACHING_SHA2, SHA256}),
    "mariadb": frozenset({PARSEC}),
}


def normalize_plugin(plugin: str | None) -> str:
    """The plugin name as compared here ('' and NULL mean mysql_native_password)."""
    name = (plugin or "").strip().strip("'`\"")
    return name or NATIVE


def native_password_hash(password: str) -> str:
    """``mysql_native_password``'s stored form: ``*`` + HEX(SHA1(SHA1(password)))."""
    inner = hashlib.sha1(password.encode("utf-8")).digest()  # noqa: S324 - the plugin's format
    return "*" + hashlib.sha1(inner).hexdigest().upper()  # noqa: S324


_ED_P = 2**255 - 19
_ED_D = (-121665 * pow(121666, _ED_P - 2, _ED_P)) % _ED_P
_ED_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_ED_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_EdPoint = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)


def _ed_add(p: _EdPoint, q: _EdPoint) -> _EdPoint:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _ED_P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _ED_P
    c = 2 * p[3] * q[3] * _ED_D % _ED_P
    d = 2 * p[2] * q[2] % _ED_P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _ED_P, g * h % _ED_P, f * g % _ED_P, e * h % _ED_P)


def ed25519_password_hash(password: str) -> str:
    """MariaDB ``ed25519`` plugin's stored form (what its ``PASSWORD()`` computes).

    The password (any length) takes the place of RFC 8032's 32-byte seed: the secret scalar is
    the clamped first half of SHA512(password), the stored value the base64 of the encoded public
    key without padding (43 characters). Pure Python: Lambda layers carry no libsodium.
    """
    digest = hashlib.sha512(password.encode("utf-8")).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    result: _EdPoint = (0, 1, 1, 0)
    addend: _EdPoint = (_ED_BX, _ED_BY, 1, _ED_BX * _ED_BY % _ED_P)
    while scalar:
        if scalar & 1:
            result = _ed_add(result, addend)
        addend = _ed_add(addend, addend)
        scalar >>= 1
    z_inv = pow(result[2], _ED_P - 2, _ED_P)
    x = result[0] * z_inv % _ED_P
    y = result[1] * z_inv % _ED_P
    encoded = (y | ((x & 1) << 255)).to_bytes(32, "little")
    return base64.b64encode(encoded).decode("ascii").rstrip("=")


__all__ = [
    "CACHING_SHA2",
    "CLIENT_HASHED_PLUGINS",
    "ED25519",
    "NATIVE",
    "PARSEC",
    "PLAINTEXT_PLUGINS",
    "SHA256",
    "ed25519_password_hash",
    "native_password_hash",
    "normalize_plugin",
]
