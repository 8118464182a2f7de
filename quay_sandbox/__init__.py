"""Test doubles for the servers the helper talks to.

Everything here is for tests and for the ``demo`` command; nothing in the helper itself imports it.

- :mod:`.tls`: a throw-away certificate authority and a server certificate (``trustme``).
- :mod:`.server`: run any WSGI application over HTTP(S) in a background thread.
- :mod:`.keys`: signing keys with a ``kid`` and their JWKS form.
- :mod:`.issuer`: a small Keycloak-shaped OIDC issuer and a Kubernetes-like service-account issuer.
- :mod:`.quay`: a Quay emulator: robot federation exchange, federation admin API, registry
  token server, and test controls.
"""

from __future__ import annotations
