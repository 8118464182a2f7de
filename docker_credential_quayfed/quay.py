"""The Quay robot federation exchange: OIDC JWT in, one-hour robot token out."""

from __future__ import annotations

from typing import Any

import httpx

from docker_credential_quayfed import claims, log, names, transport
from docker_credential_quayfed.errors import NetworkError, QuayError
from docker_credential_quayfed.transport import Deadline

FEDERATION_PATH = "/oauth2/federation/robot/token"

KNOWN_500_CAUSES = (
    "the JWT's kid is not in the issuer's JWKS or its key is not RSA, "
    "Quay cannot fetch the issuer's discovery document or JWKS (network, proxy or TLS trust), "
    "or the password sent was not a JWT"
)


def exchange(
    session: httpx.Client,
    quay_url: str,
    robot: str,
    oidc_token: str,
    *,
    deadline: Deadline,
) -> str:
    """Trade the issuer's JWT for a robot token; every refusal becomes a QuayError."""
    url = quay_url.rstrip("/") + FEDERATION_PATH
    response = transport.request(
        session,
        "GET",
        url,
        deadline=deadline,
        what="Quay federation exchange",
        auth=(robot, oidc_token),
        # A 500 from Quay itself is deterministic (bad kid, not a JWT); only proxies' 5xx repeat.
        retry_statuses=frozenset({429, 502, 503, 504}),
    )
    status = response.status_code
    body = transport.json_object(response)
    if status == 200:
        token = body.get("token") if body else None
        if not isinstance(token, str) or not token:
            raise QuayError(
                f"Quay at {quay_url} answered 200 without a token",
                "check quay_url: it must point at Quay itself, not a proxy or login page",
            )
        log.secret(token, user=robot)
        return token
    token_claims = _claims_or_empty(oidc_token)
    if status in (400, 401) and body is not None:
        message = body.get("message") if status == 400 else body.get("error")
        if not isinstance(message, str):
            message = body.get("error") or body.get("message") or body.get("detail")
        if isinstance(message, str):
            raise QuayError(
                f"Quay refused the exchange for {robot} (HTTP {status}: "
                f"{log.server_text(message)})",
                _fix_for(message, robot, token_claims),
            )
    if status == 500:
        raise QuayError(
            f"Quay failed the exchange for {robot} with HTTP 500 (its error page)",
            f"known causes: {KNOWN_500_CAUSES}; check Quay's logs",
        )
    if status in (404, 405):
        raise QuayError(
            f"{url} answered HTTP {status}: no federation endpoint there",
            "check quay_url (robot federation needs Quay 3.13 or newer)",
        )
    if status in (429, 502, 503, 504):
        raise NetworkError(
            f"Quay at {quay_url} kept answering HTTP {status}",
            "Quay or its proxy is overloaded or down; retry later",
        )
    raise QuayError(
        f"Quay answered HTTP {status} to the federation exchange for {robot}",
        "check quay_url and Quay's logs",
    )


def _fix_for(message: str, robot: str, token_claims: dict[str, Any]) -> str:
    iss = token_claims.get("iss", "?")
    sub = token_claims.get("sub", "?")
    pair = f"issuer {iss!r} and subject {sub!r}"
    lowered = message.lower()
    if "could not find robot" in lowered:
        return f"check robot = {robot!r} in the config (robot names are case-sensitive)"
    if "invalid robot" in lowered:
        return "robot must be the full name 'namespace+shortname'"
    if "does not have federated login" in lowered:
        return f"add a federation entry to {robot} in Quay with {pair}"
    if "not configured for this robot" in lowered or "does not match robot" in lowered:
        return f"Quay's federation for {robot} must list exactly {pair}"
    if "invalid token" in lowered:
        if "expired" in lowered or "iat" in lowered or "issued" in lowered:
            return "check this machine's clock, and that the issuer's tokens are fresh"
        if "kid" in lowered or "signature" in lowered or "algorithm" in lowered:
            return "the issuer must sign with an RSA key (RS256/RS384) and publish its kid in JWKS"
        return "check the token source: Quay needs a signed JWT with iss, sub, iat and exp"
    if "auth header" in lowered:
        return "this is a client bug; report it with DOCKER_CREDENTIAL_QUAYFED_DEBUG=1 output"
    return f"check the robot's federation settings in Quay ({pair})"


def _claims_or_empty(token: str) -> dict[str, Any]:
    try:
        return claims.unverified_claims(token)
    except claims.NotAJWT:
        return {}


# -- the federation admin API (Bearer OAuth token with org:admin) ----------------------------
def federation_api_url(quay_url: str, robot: str, user_form: bool) -> str:
    if not names.is_robot_name(robot):
        raise QuayError(f"{robot!r} is not a robot name", f"write it as {names.ROBOT_GRAMMAR}")
    namespace, _, short = robot.partition("+")
    base = quay_url.rstrip("/")
    if user_form:
        return f"{base}/api/v1/user/robots/{short}/federation"
    return f"{base}/api/v1/organization/{namespace}/robots/{short}/federation"


def federation_call(
    session: httpx.Client,
    method: str,
    url: str,
    oauth_token: str,
    *,
    deadline: Deadline,
    entries: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """GET/POST/DELETE the robot's federation list; returns the list Quay answers (DELETE: []).

    Entries come back whole: a field besides issuer and subject (``audiences``) is kept, so a
    list written back loses nothing this client does not know about.
    """
    response = transport.request(
        session,
        method,
        url,
        deadline=deadline,
        what=f"Quay federation API ({method})",
        headers={"Authorization": f"Bearer {oauth_token}"},
        json=entries if method == "POST" else None,
        retry_statuses=frozenset({429, 502, 503, 504}),
    )
    status = response.status_code
    if method == "DELETE" and status in (200, 204):
        return []
    body: Any
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    if status == 200 and isinstance(body, list):
        return [
            {**e, "issuer": str(e.get("issuer", "")), "subject": str(e.get("subject", ""))}
            for e in body
            if isinstance(e, dict)
        ]
    message = ""
    if isinstance(body, dict):
        found = body.get("message") or body.get("error_message") or body.get("error")
        message = log.server_text(str(found)) if found else ""
    detail = f" ({message})" if message else ""
    if status == 401:
        raise QuayError(
            f"Quay refused the OAuth token for {url} (HTTP 401){detail}",
            "create an OAuth application token with the org:admin scope ('Administer "
            "Organization') and pass it with --token-env or --token-file (robot tokens are not "
            "accepted by the API)",
        )
    if status == 403:
        raise QuayError(
            f"the OAuth token may not administer this robot (HTTP 403){detail}",
            "use a token of an organization admin with the org:admin scope",
        )
    if status == 404:
        raise QuayError(
            f"{url} answered HTTP 404{detail}",
            "check the robot name and quay_url; the /user/ form needs Quay 3.17.2 or newer",
        )
    raise QuayError(
        f"Quay answered HTTP {status} to {method} {url}{detail}",
        "check the entries (issuer must start with https://, no duplicates) and Quay's logs",
    )
