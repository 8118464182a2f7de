"""Signing keys with a ``kid``, and their public JWKS form."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """A private key, its key id and the JWS algorithm it signs with."""

    kid: str
    private_key: PrivateKey
    algorithm: str

    @property
    def is_rsa(self) -> bool:
        return isinstance(self.private_key, rsa.RSAPrivateKey)

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK dict (``kty``, ``kid``, ``use``, ``alg`` and key numbers)."""
        public = self.private_key.public_key()
        jwk: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            jwk = {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
        else:
            point = public.public_numbers()
            size = (public.curve.key_size + 7) // 8
            jwk = {
                "kty": "EC",
                "crv": "P-256",
                "x": base64.urlsafe_b64encode(point.x.to_bytes(size, "big")).rstrip(b"=").decode(),
                "y": base64.urlsafe_b64encode(point.y.to_bytes(size, "big")).rstrip(b"=").decode(),
            }
        jwk.update({"kid": self.kid, "use": "sig", "alg": self.algorithm})
        return jwk

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        algorithm: str | None = None,
        headers: Mapping[str, Any] | None = None,
        include_kid: bool = True,
    ) -> str:
        """A compact JWS of ``claims``; ``kid`` goes in the header unless ``include_kid`` is off."""
        header: dict[str, Any] = dict(headers or {})
        if include_kid:
            header.setdefault("kid", self.kid)
        return jwt.encode(
            dict(claims), self.private_key, algorithm=algorithm or self.algorithm, headers=header
        )

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _new_kid() -> str:
    return secrets.token_urlsafe(12)


def generate_rsa_key(kid: str | None = None, *, bits: int = 2048) -> SigningKey:
    """A fresh RS256 key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return SigningKey(kid=kid or _new_kid(), private_key=private, algorithm="RS256")


def generate_ec_key(kid: str | None = None) -> SigningKey:
    """A fresh ES256 (P-256) key: Quay refuses such keys, which is what the tests want."""
    private = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(kid=kid or _new_kid(), private_key=private, algorithm="ES256")


def jwks(keys: Iterable[SigningKey]) -> dict[str, Any]:
    """The JWKS document ``{"keys": [...]}`` publishing the public halves of ``keys``."""
    return {"keys": [key.public_jwk() for key in keys]}
