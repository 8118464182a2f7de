"""Whose credential is this: the one key every cached robot token, kept JWT and lock is under.

A robot token is Quay's answer to one question: may *this* identity act as *this* robot at
*this* Quay? So a cached answer is keyed by exactly those: the registry key it is served for,
the robot, Quay's URL, and the principal, i.e. who the OIDC JWT names:

- a source that hands over a ready JWT (a token file, a variable, a command, the kubelet's
  service-account token): the JWT's own ``iss``, ``sub`` and ``aud``, read from it each time;
- a source that mints the JWT with configured credentials (password, client credentials, a
  person's login, a CI job's token service): the issuer and the credential that decide who
  the issuer names (client, user, the login's person, the job).

:func:`credential_key` is the only way to make a :class:`CredentialKey`, and the token cache
takes nothing else; its digest is :func:`fastpath.credential_digest`, which the fast path
computes itself for a token file. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from docker_credential_quayfed import claims, fastpath

#: the principal of a JWT handed over as it is (its claims name it); the fast path's own
JWT = fastpath.CARRIED_JWT


@dataclass(frozen=True)
class Principal:
    """Who the JWT Quay sees names: ``kind`` says how that was learnt."""

    kind: str
    issuer: str
    subject: str
    audience: str = ""

    def __repr__(self) -> str:  # claims only, never a token
        return f"Principal({self.kind}, iss={self.issuer!r}, sub={self.subject!r})"


@dataclass(frozen=True)
class CredentialKey:
    """A robot token's key: registry, robot, Quay and principal. Its digest (which names the
    token's files) is computed from those and nothing else: no key can be built that names
    another credential's files."""

    registry: str
    robot: str
    quay_url: str
    principal: Principal
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        p = self.principal
        digest = fastpath.credential_digest(
            self.registry, self.robot, self.quay_url, p.kind, p.issuer, p.subject, p.audience
        )
        object.__setattr__(self, "digest", digest)


def credential_key(registry: str, robot: str, quay_url: str, principal: Principal) -> CredentialKey:
    """The key of ``robot`` at ``quay_url`` for ``principal``, served as ``registry``."""
    return CredentialKey(registry, robot, quay_url, principal)


def principal_digest(principal: Principal) -> str:
    """The principal alone: a JWT kept for reuse belongs to it, whatever robot it served."""
    p = principal
    return fastpath.credential_digest("", "", "", p.kind, p.issuer, p.subject, p.audience)


class NoPrincipal(ValueError):
    """The JWT names nobody: not a JWT, or no string ``iss``/``sub``."""


def principal_of_jwt(token: str, audience: str = "") -> Principal:
    """Who a ready JWT names (unverified: Quay verifies it; the cache is trusted by uid).
    ``audience`` replaces the token's own when it is exchanged for another before Quay."""
    try:
        token_claims = claims.unverified_claims(token)
    except claims.NotAJWT:
        raise NoPrincipal("not a JWT") from None
    issuer, subject = token_claims.get("iss"), token_claims.get("sub")
    if not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject:
        raise NoPrincipal("no iss or sub claim")
    return Principal(JWT, issuer, subject, audience or audience_of(token_claims))


def audience_of(token_claims: dict[str, object]) -> str:
    """``aud`` as one string: a list is sorted and joined by newlines; anything else is ""."""
    value = token_claims.get("aud")
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(sorted(value))
    return ""
